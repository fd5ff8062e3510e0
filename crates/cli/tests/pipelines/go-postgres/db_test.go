package svc

import (
	"net"
	"os"
	"testing"
	"time"
)

func TestIntegrationDatabaseIsUp(t *testing.T) {
	c, err := net.DialTimeout("tcp", os.Getenv("DATABASE_ADDR"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
