package redistest

import "testing"

// TestRestart: a killed server stops answering, and a restarted one answers
// again on the same address.
func TestRestart(t *testing.T) {
	s := New(t)
	if err := s.ping(); err != nil {
		t.Fatalf("a started server does not answer PING: %v", err)
	}
	s.Kill()
	if err := s.ping(); err == nil {
		t.Fatal("a killed server still answers PING")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.ping(); err != nil {
		t.Fatalf("a restarted server does not answer PING on %s: %v", s.Addr, err)
	}
}
