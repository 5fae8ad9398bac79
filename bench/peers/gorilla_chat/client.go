package main

import (
	"bytes"
	"log"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// How long one write may take.
	writeTimeout = 10 * time.Second
	// How long the peer may stay silent (a pong counts) before the connection is given up.
	readTimeout = 60 * time.Second
	// Pings go out more often than readTimeout, so a live peer always answers in time.
	pingEvery = readTimeout * 9 / 10
	// The largest message read; a bigger one closes the connection.
	readLimit = 512
	// Messages queued for one client before the hub gives up on it.
	queueLength = 256
)

var (
	lineBreak = []byte{'\n'}
	blank     = []byte{' '}
)

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}

// client is one WebSocket connection: readLoop hands what it reads to the hub, writeLoop sends
// what the hub queues in send, and each ends the connection for both.
type client struct {
	h    *hub
	conn *websocket.Conn
	send chan []byte
}

// readLoop runs until the connection fails, then takes the client out of the hub. A message's
// line breaks become spaces (a message is one line of chat) and its outer spaces are trimmed.
func (c *client) readLoop() {
	defer func() {
		c.h.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(readLimit)
	c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	})
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			if websocket.IsUnexpectedCloseError(err, websocket.CloseGoingAway, websocket.CloseAbnormalClosure) {
				log.Printf("gorilla_chat: read: %v", err)
			}
			return
		}
		c.h.broadcast <- bytes.TrimSpace(bytes.ReplaceAll(msg, lineBreak, blank))
	}
}

// writeLoop sends what the hub queues, and a ping every pingEvery. Whatever is already queued
// when it starts a frame goes into that same text frame, one message per line.
func (c *client) writeLoop() {
	ticker := time.NewTicker(pingEvery)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case msg, open := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if !open {
				// The hub dropped this client.
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			w, err := c.conn.NextWriter(websocket.TextMessage)
			if err != nil {
				return
			}
			w.Write(msg)
			for queued := len(c.send); queued > 0; queued-- {
				w.Write(lineBreak)
				w.Write(<-c.send)
			}
			if err := w.Close(); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// serveWs registers the client, upgrades the request and starts its two loops. The client joins
// the hub before the upgrade's response goes out (the example registers it after), so a client
// that has its 101 gets every message broadcast from then on: registered after, a message the hub
// fanned out in between would miss it, and the load generator rightly counts that as lost.
func serveWs(h *hub, w http.ResponseWriter, r *http.Request) {
	c := &client{h: h, send: make(chan []byte, queueLength)}
	h.register <- c
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		log.Printf("gorilla_chat: upgrade: %v", err)
		h.unregister <- c
		return
	}
	c.conn = conn
	go c.writeLoop()
	go c.readLoop()
}
