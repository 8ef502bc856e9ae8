package boltstore

// Watch returns a channel that receives a signal whenever the event's status
// may have changed, and a function to stop watching. Signals coalesce: read
// the event again after each one.
func (s *Store) Watch(id ID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.watchMu.Lock()
	s.watchers[id] = append(s.watchers[id], ch)
	s.watchMu.Unlock()
	return ch, func() {
		s.watchMu.Lock()
		defer s.watchMu.Unlock()
		list := s.watchers[id]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(s.watchers, id)
		} else {
			s.watchers[id] = list
		}
	}
}

// notify signals the event's watchers without blocking.
func (s *Store) notify(id ID) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for _, ch := range s.watchers[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// notifyAll signals the watchers of every event in ids.
func (s *Store) notifyAll(ids []ID) {
	s.watchMu.Lock()
	n := len(s.watchers)
	s.watchMu.Unlock()
	if n == 0 {
		return
	}
	for _, id := range ids {
		s.notify(id)
	}
}
