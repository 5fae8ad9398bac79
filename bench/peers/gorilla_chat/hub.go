package main

// hub is the one goroutine that knows every connected client. Clients enter and leave through
// its register and unregister channels and hand it what they read through broadcast; it alone
// touches the clients map, so the map needs no lock.
type hub struct {
	clients    map[*client]struct{}
	broadcast  chan []byte
	register   chan *client
	unregister chan *client
}

func newHub() *hub {
	return &hub{
		clients:    make(map[*client]struct{}),
		broadcast:  make(chan []byte),
		register:   make(chan *client),
		unregister: make(chan *client),
	}
}

// drop forgets c and closes its queue, which tells its writer to send a close frame and stop.
func (h *hub) drop(c *client) {
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.send)
	}
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = struct{}{}
		case c := <-h.unregister:
			h.drop(c)
		case msg := <-h.broadcast:
			// Never wait for a client: one whose queue is full is too slow and is dropped.
			for c := range h.clients {
				select {
				case c.send <- msg:
				default:
					h.drop(c)
				}
			}
		}
	}
}
