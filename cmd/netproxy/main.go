// Command netproxy is a TCP proxy that stands for a link between two
// regions (package netproxy): it forwards one listen address to one target
// with a one-way delay, and cuts or heals the link on a signal. It is what
// scripts/regions.sh puts between region B and the Redis primary.
//
//	netproxy --listen 127.0.0.1:7101 --target 127.0.0.1:7001 --delay 20ms
//	kill -USR1 <pid>   # cut: hold every byte (as a broken route does)
//	kill -USR2 <pid>   # heal: deliver what was held, in order
//
// SIGINT or SIGTERM stops it.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/presencecluster/presence/pkg/netproxy"
)

func main() {
	fs := flag.NewFlagSet("netproxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	target := fs.String("target", "", "address to forward to (required)")
	delay := fs.Duration("delay", 0, "one-way delay of every byte (a round trip takes twice as long)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *target == "" || *delay < 0 {
		fmt.Fprintln(os.Stderr, "netproxy: --target is required, --delay must be >= 0")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	p, err := netproxy.Listen(*listen, *target)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	p.SetDelay(*delay)
	log.Info("forwarding", "listen", p.Addr(), "target", *target, "one_way_delay", *delay, "pid", os.Getpid())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGTERM)
	for s := range sig {
		switch s {
		case syscall.SIGUSR1:
			p.Cut()
			log.Warn("link cut: bytes are held until the heal (kill -USR2)")
		case syscall.SIGUSR2:
			p.Heal()
			log.Info("link healed")
		default:
			p.Close()
			return
		}
	}
}
