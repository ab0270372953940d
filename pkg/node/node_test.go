package node_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/node"
	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/redis/go-redis/v9"
)

// TestNewFailsCleanly: a node whose Redis does not answer gets an error from
// New (it used to panic: the cleanup ran on the nil node New returned).
func TestNewFailsCleanly(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := node.New(ctx, node.Config{Redis: rdb})
	if err == nil || n != nil {
		t.Fatalf("New = %v, %v; want an error", n, err)
	}
}
