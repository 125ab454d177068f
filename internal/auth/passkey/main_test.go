package passkey

import (
	"testing"

	"github.com/moat-dev/moat/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }
