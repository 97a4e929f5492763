package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/youmark/pkcs8"
)

// ParseType reads a key type as users write it; the error lists the valid ones.
func ParseType(s string) (Type, error) {
	t := Type(strings.ToLower(strings.TrimSpace(s)))
	if t == "" {
		return P256, nil
	}
	for _, v := range Types {
		if v == t {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown key type %q: use one of p256, p384, ed25519, rsa3072", s)
}

// Generate makes a new private key of type t.
func Generate(t Type) (crypto.Signer, error) {
	switch t {
	case P256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case P384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	return nil, fmt.Errorf("unknown key type %q", t)
}

// TypeOf tells the Type of a public or private key, or "" for keys nixpki doesn't make.
func TypeOf(pub crypto.PublicKey) Type {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return P256
		case elliptic.P384():
			return P384
		}
	case ed25519.PublicKey:
		return Ed25519
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return RSA3072
		}
	}
	return ""
}

// Describe names a public key as people do: "RSA 1024-bit", "ECDSA P-521", "Ed25519".
func Describe(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "no"
	}
	return "an unsupported kind of"
}

// NewPassword returns a fresh random password (base64url, no padding).
func NewPassword() (string, error) {
	b := make([]byte, GeneratedPasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// EncryptPEM encrypts key under password as an "ENCRYPTED PRIVATE KEY" PEM block.
func EncryptPEM(key crypto.Signer, password []byte) ([]byte, error) {
	if len(password) == 0 {
		return nil, errors.New("refusing to write a private key without a password")
	}
	der, err := pkcs8.MarshalPrivateKey(key, password, pkcs8Opts)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// DecryptPEM reads an encrypted PKCS#8 PEM key. name is used in error messages.
func DecryptPEM(data, password []byte, name string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block found: expected an ENCRYPTED PRIVATE KEY", name)
	}
	if block.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("%s: is a %q PEM block: nixpki keeps keys encrypted (ENCRYPTED PRIVATE KEY); encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`", name, block.Type)
	}
	k, _, err := pkcs8.ParsePrivateKey(block.Bytes, password)
	if err != nil {
		// Not wrapped: which step failed (padding, MAC, ASN.1) tells a password
		// guesser nothing useful and the operator nothing more than this.
		return nil, fmt.Errorf("%s: cannot decrypt: wrong password (check --password-file) or a damaged file", name)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", name, k)
	}
	return s, nil
}

// CheckPrivate refuses a secret file that group or others may read or write, naming
// the chmod that fixes it.
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible by group or others (mode %04o): private keys and passwords must be 0600; fix with: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

// CheckDir refuses a directory that group or others may write, naming the chmod
// that fixes it: whoever may write it may replace the keys, the database or the
// configuration inside.
func CheckDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): whoever may write it may replace what it holds; fix with: chmod go-w %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

// CheckNotWorldWritable refuses a file that others may write (a configuration
// naming keys, trust anchors and policy), naming the chmod that fixes it.
func CheckNotWorldWritable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s is writable by others (mode %04o); fix with: chmod o-w %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

// ReadPrivateFile reads a secret file after CheckPrivate.
func ReadPrivateFile(path string) ([]byte, error) {
	if err := CheckPrivate(path); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// ReadPassword reads a password file (0600 enforced); one trailing newline is dropped.
func ReadPassword(path string) ([]byte, error) {
	b, err := ReadPrivateFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("password file %s is empty", path)
	}
	return b, nil
}

// LoadSigner reads and decrypts the key at path, refusing loose permissions.
func LoadSigner(path string, password []byte) (crypto.Signer, error) {
	data, err := ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	return DecryptPEM(data, password, path)
}

// WritePrivateFile writes data to path with mode 0600 atomically (temp file + rename),
// creating parent directories 0700. It never overwrites an existing file.
func WritePrivateFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists: refusing to overwrite a secret", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return writeAtomic(path, data, 0o600, os.Link) // Link fails if path appeared meanwhile
}

// ReplaceFile writes data to path atomically with the given mode, replacing what was
// there: readers see the old file or the new one, never a torn one, even after a crash.
func ReplaceFile(path string, data []byte, mode os.FileMode) error {
	return writeAtomic(path, data, mode, os.Rename)
}

// writeAtomic writes data to a synced temporary file beside path, then puts it in
// place with place (os.Rename to replace, os.Link to refuse an existing file).
func writeAtomic(path string, data []byte, mode os.FileMode, place func(from, to string) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return place(tmp, path)
}

// WriteEncrypted encrypts key and writes it 0600 to path.
func WriteEncrypted(path string, key crypto.Signer, password []byte) error {
	data, err := EncryptPEM(key, password)
	if err != nil {
		return err
	}
	return WritePrivateFile(path, data)
}
