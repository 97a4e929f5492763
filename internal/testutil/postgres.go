package testutil

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// A private PostgreSQL cluster shared by the tests of one test binary: started on
// first use in a temporary directory, listening on a unix socket only, run by an
// unprivileged user (PostgreSQL refuses root), and stopped by RunWithPostgres.
var pg struct {
	once    sync.Once
	err     error
	dir     string // data and socket directory
	bin     string
	uid     int
	admin   *sql.DB
	counter atomic.Int64
}

// RunWithPostgres runs the package's tests (use it as TestMain's body) and stops the
// cluster if a test started one.
func RunWithPostgres(m *testing.M) int {
	code := m.Run()
	if pg.dir != "" {
		if pg.admin != nil {
			pg.admin.Close()
		}
		pgCmd("pg_ctl", "-D", filepath.Join(pg.dir, "data"), "-m", "immediate", "stop").Run()
		os.RemoveAll(pg.dir)
	}
	return code
}

// postgresBin finds the newest PostgreSQL server binaries Debian installed.
func postgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(r), nil // where all the server programs are
		}
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(m, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[j]))))
		return vi < vj
	})
	if len(m) == 0 {
		return "", fmt.Errorf("PostgreSQL is not installed (Debian package postgresql)")
	}
	return filepath.Dir(m[len(m)-1]), nil
}

// pgCmd runs a PostgreSQL program as the cluster's user.
func pgCmd(name string, args ...string) *exec.Cmd {
	prog := filepath.Join(pg.bin, name)
	if os.Geteuid() != 0 {
		return exec.Command(prog, args...)
	}
	uid := strconv.Itoa(pg.uid)
	return exec.Command("setpriv", append([]string{"--reuid=" + uid, "--regid=" + uid, "--clear-groups", prog}, args...)...)
}

func startPostgres() error {
	bin, err := postgresBin()
	if err != nil {
		return err
	}
	pg.bin, pg.uid = bin, 65534 // nobody
	dir, err := os.MkdirTemp("", "nixpki-pg-")
	if err != nil {
		return err
	}
	pg.dir = dir
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, pg.uid, pg.uid); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := pgCmd("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// No TCP listener: the socket in dir only. fsync off: the tests kill servers,
	// never the machine.
	opts := fmt.Sprintf("-c listen_addresses= -k %s -c fsync=off -c full_page_writes=off -c max_connections=200", dir)
	if out, err := pgCmd("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	pg.admin, err = sql.Open("pgx", PostgresDSN("postgres", "postgres"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pg.admin.PingContext(ctx)
}

// PostgresDSN is the DSN of a database of the shared cluster for a role.
func PostgresDSN(role, dbname string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&sslmode=disable", role, dbname, pg.dir)
}

// PostgresSocketDir is the directory of the shared cluster's socket.
func PostgresSocketDir() string { return pg.dir }

// Postgres returns the DSN of a new, empty schema of the shared cluster's test
// database (its own search_path: a database of its own to the code under test, at a
// fraction of CREATE DATABASE's cost), and a superuser connection to that database.
// The package's TestMain must call RunWithPostgres. Without PostgreSQL it fails the
// test in CI (CI=true) and skips it elsewhere.
func Postgres(t testing.TB) (dsn string, admin *sql.DB) {
	t.Helper()
	pg.once.Do(func() { pg.err = startPostgres() })
	if pg.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %v; CI must install it (see scripts/test.sh)", pg.err)
		}
		t.Skipf("PostgreSQL: %v", pg.err)
	}
	name := fmt.Sprintf("t%d", pg.counter.Add(1))
	if _, err := pg.admin.Exec(`CREATE SCHEMA ` + name); err != nil {
		t.Fatal(err)
	}
	return PostgresDSN("postgres", "postgres") + "&search_path=" + name, pg.admin
}

// ExitWithPostgres is a TestMain body: it runs the tests, stops the shared cluster
// and exits with the tests' status.
func ExitWithPostgres(m *testing.M) { os.Exit(RunWithPostgres(m)) }

// PostgresStandby starts a hot standby of the shared cluster (pg_basebackup, streaming
// replication over the unix socket) and returns the directory of its socket; it is
// stopped when the test ends. Writes to it fail as on any read-only standby.
func PostgresStandby(t testing.TB) (socketDir string) {
	t.Helper()
	Postgres(t) // the primary
	dir, err := os.MkdirTemp("", "nixpki-pg-standby-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, pg.uid, pg.uid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := pgCmd("pg_basebackup", "-h", pg.dir, "-U", "postgres", "-D", data, "-R", "-X", "stream", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses= -k %s -c fsync=off -c hot_standby=on -c max_connections=200", dir)
	if out, err := pgCmd("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("standby pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		pgCmd("pg_ctl", "-D", data, "-m", "immediate", "stop").Run()
		os.RemoveAll(dir)
	})
	return dir
}
