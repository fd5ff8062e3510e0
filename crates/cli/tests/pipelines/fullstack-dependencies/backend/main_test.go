package main

import "testing"

func TestGreeting(t *testing.T) {
	if greeting() != "hi" {
		t.Fail()
	}
}
