package cluster

import (
	"github.com/drvmesh/drvmesh/node/internal/httpjson"
	"github.com/drvmesh/drvmesh/node/internal/logkey"
)

// Log keys, from the node's one list.
const (
	keyErr    = logkey.Err
	keyRemote = logkey.Remote
	keyMember = logkey.Member
)

var (
	writeJSON    = httpjson.Write
	apiError     = httpjson.Error
	apiErrorText = httpjson.ErrorText
)
