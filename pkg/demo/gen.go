//go:build ignore

// gen copies the JavaScript client into static/ (run by go generate).
package main

import (
	"log"
	"os"
)

func main() {
	b, err := os.ReadFile("../../clients/js/src/client.js")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("static/presence.js", b, 0o644); err != nil {
		log.Fatal(err)
	}
}
