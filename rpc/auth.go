package rpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Roles a bearer token can carry.
const (
	RolePublish = "publish" // NewEvent, PublishEvents
	RoleRead    = "read"    // EventStatus, WatchEvent, ListEvents
	RoleConsume = "consume" // Subscribe
	RoleAdmin   = "admin"   // Redrive, and everything else
)

// Roles lists every role.
var Roles = []string{RolePublish, RoleRead, RoleConsume, RoleAdmin}

// Token is one accepted bearer token: only the SHA-256 of the token is kept.
type Token struct {
	Name   string
	SHA256 string // hex
	Roles  []string
}

// HashToken returns the hex SHA-256 the config holds for a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// methodRoles says which role each method needs. Health is open; methods
// not listed (server reflection) need any valid token.
var methodRoles = map[string]string{
	"/controller.v1.Controller/NewEvent":      RolePublish,
	"/controller.v1.Controller/PublishEvents": RolePublish,
	"/controller.v1.Controller/EventStatus":   RoleRead,
	"/controller.v1.Controller/WatchEvent":    RoleRead,
	"/controller.v1.Controller/ListEvents":    RoleRead,
	"/controller.v1.Controller/Subscribe":     RoleConsume,
	"/controller.v1.Controller/Redrive":       RoleAdmin,
}

// authenticator checks bearer tokens against their hashes.
type authenticator struct {
	byHash map[string]Token
}

func newAuthenticator(tokens []Token) *authenticator {
	if len(tokens) == 0 {
		return nil
	}
	a := &authenticator{byHash: map[string]Token{}}
	for _, t := range tokens {
		a.byHash[strings.ToLower(t.SHA256)] = t
	}
	return a
}

// check returns nil if the call may go ahead.
func (a *authenticator) check(ctx context.Context, method string) error {
	if a == nil || strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var raw string
	if v := md.Get("authorization"); len(v) > 0 {
		raw = v[0]
	}
	token, ok := strings.CutPrefix(raw, "Bearer ")
	if !ok || token == "" {
		return status.Error(codes.Unauthenticated, "unauthenticated: send authorization: Bearer <token>")
	}
	t, ok := a.byHash[HashToken(token)]
	if !ok {
		return status.Error(codes.Unauthenticated, "unauthenticated: unknown token")
	}
	need, listed := methodRoles[method]
	if !listed || slices.Contains(t.Roles, RoleAdmin) || slices.Contains(t.Roles, need) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "permission denied: %s needs role %s; token %q has %s", method, need, t.Name, strings.Join(t.Roles, ","))
}

func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}
