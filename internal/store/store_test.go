package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openPostgres(t *testing.T) store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), storetest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLiteStore(t *testing.T) { storetest.Run(t, openSQLite) }

func TestPostgresStore(t *testing.T) { storetest.Run(t, openPostgres) }

func TestPostgresInstancesStartingAtOnceMigrateOnce(t *testing.T) {
	dsn := storetest.Postgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := store.Open(context.Background(), dsn)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestSQLiteReopenKeepsDataAndSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "moat.db")
	s, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(t.Context(), &store.User{Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", fi.Mode().Perm())
	}
	s, err = store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetUserByEmail(t.Context(), "a@example.com"); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteTwoProcessesWriteTogether(t *testing.T) {
	// Two Store values on one file stand in for serve and the CLI.
	path := filepath.Join(t.TempDir(), "moat.db")
	a, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for _, s := range []store.Store{a, b, a, b} {
		wg.Go(func() {
			for range 20 {
				if err := s.Audit(context.Background(), &store.AuditEvent{Action: "x"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ev, err := a.ListAudit(t.Context(), store.AuditFilter{})
	if err != nil || len(ev) != 80 {
		t.Errorf("%d events, %v; want 80", len(ev), err)
	}
}

// TestSQLiteDataSurvivesACrash writes in a child process that then kills
// itself with SIGKILL (no Close, no checkpoint), and reopens the file.
func TestSQLiteDataSurvivesACrash(t *testing.T) {
	if path := os.Getenv("MOAT_STORE_CRASH_PATH"); path != "" {
		s, err := store.Open(context.Background(), path)
		if err != nil {
			os.Exit(3)
		}
		for i := range 50 {
			if err := s.Audit(context.Background(), &store.AuditEvent{Action: "crash.test", Detail: time.Now().String()}); err != nil {
				os.Exit(4)
			}
			_ = i
		}
		if err := s.CreateUser(context.Background(), &store.User{Email: "survivor@example.com"}); err != nil {
			os.Exit(5)
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	path := filepath.Join(t.TempDir(), "moat.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteDataSurvivesACrash$")
	cmd.Env = append(os.Environ(), "MOAT_STORE_CRASH_PATH="+path)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL", err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Logf("no WAL file left behind: %v", err)
	}
	s, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetUserByEmail(t.Context(), "survivor@example.com"); err != nil {
		t.Errorf("user written before the crash: %v", err)
	}
	ev, err := s.ListAudit(t.Context(), store.AuditFilter{Action: "crash.test"})
	if err != nil || len(ev) != 50 {
		t.Errorf("%d events after the crash, %v; want 50", len(ev), err)
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	s, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Pretend a newer moat migrated the file.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)`, store.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = store.Open(t.Context(), path)
	if err == nil || !strings.Contains(err.Error(), "newer than this moat knows") {
		t.Fatalf("err = %v, want a refusal naming the newer schema", err)
	}
}

// TestSQLiteOpensAnyPath pins a bug: the path went into a file: URI
// unescaped, so a data_dir with % or # opened the wrong file.
func TestSQLiteOpensAnyPath(t *testing.T) {
	for _, name := range []string{"with space", "per%20cent", "hash#x", "q?x=1", "ünïcode", "colon:x"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			s, err := store.Open(t.Context(), filepath.Join(dir, "moat.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.CreateUser(t.Context(), &store.User{Email: "a@example.com"}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "moat.db")); err != nil {
				t.Errorf("the database is not where asked: %v", err)
			}
		})
	}
}
