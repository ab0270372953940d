package redisstore

import (
	"context"

	"github.com/presencecluster/presence/pkg/presence"
)

// Concurrent heartbeats are sent together: a few workers each take every
// heartbeat waiting (up to maxBatch) and run them as one pipeline, so a node
// under load costs Redis one round trip per batch, not per heartbeat, while
// a lone heartbeat still goes out at once.
const (
	batchWorkers = 4
	maxBatch     = 256
)

type hbRequest struct {
	hb   *presence.Heartbeat
	res  presence.HeartbeatResult
	err  error
	done chan struct{}
}

func (s *Store) startBatcher(ctx context.Context) {
	s.hbQueue = make(chan *hbRequest, 4*maxBatch)
	for i := 0; i < batchWorkers; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runBatcher(ctx)
		}()
	}
}

func (s *Store) runBatcher(ctx context.Context) {
	batch := make([]*hbRequest, 0, maxBatch)
	hbs := make([]*presence.Heartbeat, 0, maxBatch)
	for {
		batch, hbs = batch[:0], hbs[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-s.hbQueue:
			batch = append(batch, r)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-s.hbQueue:
				batch = append(batch, r)
			default:
				break more
			}
		}
		for _, r := range batch {
			hbs = append(hbs, r.hb)
		}
		res, errs := s.HeartbeatMany(context.Background(), hbs)
		for i, r := range batch {
			r.res, r.err = res[i], errs[i]
			close(r.done)
		}
	}
}

// batchedHeartbeat queues hb for the batcher and waits for its result.
func (s *Store) batchedHeartbeat(ctx context.Context, hb *presence.Heartbeat) (presence.HeartbeatResult, error) {
	r := &hbRequest{hb: hb, done: make(chan struct{})}
	select {
	case s.hbQueue <- r:
	case <-ctx.Done():
		return presence.HeartbeatResult{}, s.wrap("heartbeat", ctx.Err())
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return presence.HeartbeatResult{}, s.wrap("heartbeat", ctx.Err())
	}
}
