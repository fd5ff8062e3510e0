package cart

import "testing"

func TestTotal(t *testing.T) {
	if got := Total([]int{150, 250}); got != 400 {
		t.Fatalf("Total = %d, want 400", got)
	}
}
