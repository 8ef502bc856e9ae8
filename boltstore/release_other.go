//go:build !linux

package boltstore

// releaseMappedPages does nothing here; see release_linux.go.
func (s *Store) releaseMappedPages() {}
