package fanout

import "testing"

// FuzzDecode: whatever arrives on the channel, decode either refuses it
// or returns a valid event that encodes back to exactly the same message.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"session.revoked 9f86d081", "keys.changed ", "resync ", "user.changed a b", "", " ", "x\x00 y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		e, err := decode(payload)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decode accepted %q, which does not validate: %v", payload, err)
		}
		if e.encode() != payload {
			t.Fatalf("decode(%q) = %v, which encodes as %q", payload, e, e.encode())
		}
	})
}
