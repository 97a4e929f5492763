package gate

import "testing"

// FuzzParseSettings: any bytes as a gate settings file are accepted as a valid
// configuration or refused with an error; never a panic.
func FuzzParseSettings(f *testing.F) {
	f.Add([]byte(`{"name":"host-a","listen":"127.0.0.1:8501","root_file":"/etc/root.crt","key_file":"$CREDENTIALS_DIRECTORY/gate-key"}`))
	f.Add([]byte(`{"name":"host-a","sigs_neded":2}`))
	f.Add([]byte(`{"name":"host-a","thresholds":[{"pattern":"*-sudo-*","sigs_needed":"2"}]}`))
	f.Add([]byte(`{"name":"host-a","password":"x","key_file":"/nix/store/0-key"}`))
	f.Add([]byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseSettings(data)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("accepted settings that do not validate: %v", verr)
			}
		}
	})
}
