package httpapi

import (
	"errors"
	"fmt"
	"testing"
)

// TestDisclosurePagesFoldOnce: the first request renders the pages of
// every published year at once, and later requests for any of them render
// nothing; a failed render is not kept.
func TestDisclosurePagesFoldOnce(t *testing.T) {
	var d disclosurePages
	renders := 0
	render := func() (map[int][]byte, error) {
		renders++
		pages := map[int][]byte{}
		for y := 2000; y <= 2025; y++ {
			pages[y] = []byte(fmt.Sprint(y))
		}
		return pages, nil
	}
	for _, y := range []int{2020, 2000, 2025, 2020, 2013} {
		p, err := d.page(y, render)
		if err != nil || string(p) != fmt.Sprint(y) {
			t.Fatalf("page %d: %q %v", y, p, err)
		}
	}
	if renders != 1 {
		t.Fatalf("%d renders for five requests of published years, want 1", renders)
	}
	var e disclosurePages
	if _, err := e.page(2020, func() (map[int][]byte, error) { return nil, errors.New("disk gone") }); err == nil {
		t.Fatal("a failed render served a page")
	}
	if _, err := e.page(2020, render); err != nil || renders != 2 {
		t.Fatalf("after a failed render: %v, %d renders", err, renders)
	}
}
