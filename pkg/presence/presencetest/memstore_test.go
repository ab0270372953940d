package presencetest_test

import (
	"testing"

	"github.com/presencecluster/presence/pkg/presence"
	"github.com/presencecluster/presence/pkg/presence/presencetest"
	"github.com/presencecluster/presence/pkg/presence/storetest"
)

// memBackend is a fresh MemStore as a contract suite backend.
func memBackend(t *testing.T) storetest.Backend {
	s := presencetest.NewMemStore(presencetest.MemConfig{})
	return storetest.Backend{
		Store: s,
		NewSubscriber: func(h presence.EventHandler) presence.Subscriber {
			sub := s.NewSubscriber(h)
			t.Cleanup(func() { sub.Close() })
			return sub
		},
		ReapNodes: s.ReapNodes,
	}
}

// TestStoreContract holds MemStore to the contract suite that redisstore
// passes on Redis, Redis Cluster and the embedded store.
func TestStoreContract(t *testing.T) {
	storetest.Run(t, memBackend)
}
