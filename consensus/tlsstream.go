package consensus

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStreamLayer is a raft.StreamLayer that speaks mutual TLS: accepted
// connections are TLS servers with serverConf (which should require and
// verify client certificates), dialed ones TLS clients with clientConf.
type tlsStreamLayer struct {
	ln         net.Listener
	advertise  net.Addr
	serverConf *tls.Config
	clientConf *tls.Config
}

// NewTLSStreamLayer returns a raft stream layer over ln. advertise is the
// address other nodes dial (ln.Addr() when nil). serverConf should set
// ClientAuth to tls.RequireAndVerifyClientCert; when clientConf has no
// ServerName, the dialed host is used. A peer whose certificate does not
// verify fails the handshake, and raft drops the connection.
func NewTLSStreamLayer(ln net.Listener, advertise net.Addr, serverConf, clientConf *tls.Config) raft.StreamLayer {
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &tlsStreamLayer{ln: ln, advertise: advertise, serverConf: serverConf, clientConf: clientConf}
}

// Accept returns the next connection; its handshake runs on first use so a
// slow or hostile peer does not hold up other accepts.
func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, l.serverConf), nil
}

func (l *tlsStreamLayer) Close() error { return l.ln.Close() }

func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a raft peer and completes the TLS handshake.
func (l *tlsStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conf := l.clientConf
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(string(addr))
		if err != nil {
			return nil, fmt.Errorf("raft address %q: %w", addr, err)
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(addr), conf)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", addr, err)
	}
	return c, nil
}

// tcpStreamLayer is the plain TCP layer used when Config.Layer is nil.
type tcpStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
}

func (l *tcpStreamLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *tcpStreamLayer) Close() error              { return l.ln.Close() }
func (l *tcpStreamLayer) Addr() net.Addr            { return l.advertise }

func (l *tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
