package cmd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/jsctl/jsctl/proto/controller/v1"
	"github.com/jsctl/jsctl/rpc"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir, name string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := testPKI{caFile: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, name+"-"+cn+".pem"), filepath.Join(dir, name+"-"+cn+"-key.pem")
		writePEM(t, certFile, "CERTIFICATE", der)
		kb, _ := x509.MarshalECPrivateKey(key)
		writePEM(t, keyFile, "EC PRIVATE KEY", kb)
		return certFile, keyFile
	}
	p.serverCert, p.serverKey = issue("server", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.clientCert, p.clientKey = issue("client", x509.ExtKeyUsageClientAuth, nil)
	return p
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecurityMatrix calls every RPC in seven ways; only the last, with TLS,
// a client certificate, a token and the right role, may succeed.
func TestSecurityMatrix(t *testing.T) {
	dir := t.TempDir()
	pki, wrong := newTestPKI(t, dir, "good"), newTestPKI(t, dir, "wrong")
	tokens := map[string]string{} // role -> token
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.GRPC.TLSCertFile, cfg.GRPC.TLSKeyFile, cfg.GRPC.TLSClientCAFile = pki.serverCert, pki.serverKey, pki.caFile
	for _, role := range rpc.Roles {
		tok := "token-" + role
		tokens[role] = tok
		cfg.Auth.Tokens = append(cfg.Auth.Tokens, TokenConfig{Name: role, SHA256: rpc.HashToken(tok), Roles: []string{role}})
	}
	cfg.Groups = []GroupConfig{{Name: "authg"}}
	a := startApp(t, cfg)

	dial := func(creds credentials.TransportCredentials, token string) pb.ControllerClient {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
		}
		cc, err := grpc.NewClient(a.GRPCAddr(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return pb.NewControllerClient(cc)
	}
	mtls := func(ca testPKI, withCert bool) credentials.TransportCredentials {
		c, err := clientTLS(ca.caFile, map[bool]string{true: pki.clientCert}[withCert], map[bool]string{true: pki.clientKey}[withCert])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := dial(mtls(pki, true), tokens[rpc.RoleAdmin])

	// A failed event for Redrive, and an event for EventStatus and WatchEvent.
	sub := subscribe(t, admin, "authg", nil, 10)
	failed := publish(t, admin, &pb.NewEventRequest{EventType: "auth.test"}).GetCorrelationId()
	sub.settle(sub.next(), pb.SettleAction_SETTLE_ACTION_TERMINATE, 0, "for redrive")
	waitStatus(t, admin, failed, pb.Status_STATUS_FAILED)
	sub.cancel()

	rpcs := []struct {
		name string
		role string
		call func(ctx context.Context, c pb.ControllerClient) error
	}{
		{"NewEvent", rpc.RolePublish, func(ctx context.Context, c pb.ControllerClient) error {
			_, err := c.NewEvent(ctx, &pb.NewEventRequest{EventType: "auth.test"})
			return err
		}},
		{"PublishEvents", rpc.RolePublish, func(ctx context.Context, c pb.ControllerClient) error {
			s, err := c.PublishEvents(ctx)
			if err != nil {
				return err
			}
			// io.EOF: the server ended the stream already; Recv has its status.
			if err := s.Send(&pb.NewEventRequest{EventType: "auth.test"}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"EventStatus", rpc.RoleRead, func(ctx context.Context, c pb.ControllerClient) error {
			_, err := c.EventStatus(ctx, &pb.EventStatusRequest{CorrelationId: failed})
			return err
		}},
		{"WatchEvent", rpc.RoleRead, func(ctx context.Context, c pb.ControllerClient) error {
			w, err := c.WatchEvent(ctx, &pb.EventStatusRequest{CorrelationId: failed})
			if err != nil {
				return err
			}
			_, err = w.Recv()
			return err
		}},
		{"ListEvents", rpc.RoleRead, func(ctx context.Context, c pb.ControllerClient) error {
			_, err := c.ListEvents(ctx, &pb.ListEventsRequest{})
			return err
		}},
		{"Subscribe", rpc.RoleConsume, func(ctx context.Context, c pb.ControllerClient) error {
			publish(t, admin, &pb.NewEventRequest{EventType: "auth.test"})
			s, err := c.Subscribe(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&pb.SubscribeRequest{Request: &pb.SubscribeRequest_Open{Open: &pb.SubscribeOpen{Group: "authg"}}}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"Redrive", rpc.RoleAdmin, func(ctx context.Context, c pb.ControllerClient) error {
			_, err := c.Redrive(ctx, &pb.RedriveRequest{CorrelationId: failed})
			return err
		}},
	}
	wrongRole := map[string]string{rpc.RolePublish: rpc.RoleRead, rpc.RoleRead: rpc.RoleConsume, rpc.RoleConsume: rpc.RolePublish, rpc.RoleAdmin: rpc.RolePublish}
	for _, r := range rpcs {
		cases := []struct {
			name   string
			client pb.ControllerClient
			want   codes.Code
		}{
			{"PlaintextToTLS", dial(insecure.NewCredentials(), tokens[r.role]), codes.Unavailable},
			{"NoClientCert", dial(mtls(pki, false), tokens[r.role]), codes.Unavailable},
			{"WrongCA", dial(mtls(wrong, true), tokens[r.role]), codes.Unavailable},
			{"NoToken", dial(mtls(pki, true), ""), codes.Unauthenticated},
			{"BadToken", dial(mtls(pki, true), "not-a-token"), codes.Unauthenticated},
			{"WrongRole", dial(mtls(pki, true), tokens[wrongRole[r.role]]), codes.PermissionDenied},
			{"RightTokenAndRole", dial(mtls(pki, true), tokens[r.role]), codes.OK},
		}
		for _, tc := range cases {
			t.Run(r.name+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if got := statusCode(r.call(ctx, tc.client)); got != tc.want {
					t.Fatalf("code %v, want %v", got, tc.want)
				}
			})
		}
	}

	t.Run("HealthIsOpen", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "health", "--addr", a.GRPCAddr(), "--tls-ca", pki.caFile, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey)
		if code != 0 {
			t.Fatalf("exit %d %s %s", code, out, errOut)
		}
	})
	t.Run("CLIWithToken", func(t *testing.T) {
		args := []string{"--addr", a.GRPCAddr(), "--tls-ca", pki.caFile, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey}
		if code, _, errOut := runCLI(t, "", append([]string{"status", failed, "--token", tokens[rpc.RoleRead]}, args...)...); code != 0 {
			t.Fatalf("status with a read token: %s", errOut)
		}
		if code, _, errOut := runCLI(t, "", append([]string{"publish", "a", "x", "--token", tokens[rpc.RoleRead]}, args...)...); code != 1 || !strings.Contains(errOut, "PermissionDenied") {
			t.Fatalf("publish with a read token: exit %d %s", code, errOut)
		}
	})
	t.Run("BenchWithToken", func(t *testing.T) {
		args := []string{"bench", "publish", "-n", "20", "-c", "2", "-o", "json", "--addr", a.GRPCAddr(), "--tls-ca", pki.caFile, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey}
		bench := func(token string) benchResult {
			code, out, errOut := runCLI(t, "", append(args, "--token", token)...)
			var rep benchReport
			if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Results) != 1 || rep.Results[0].Ops+rep.Results[0].Errors != 20 {
				t.Fatalf("bench with token %q: exit %d, %s %s", token, code, out, errOut)
			}
			return rep.Results[0]
		}
		if r := bench(tokens[rpc.RolePublish]); r.Ops != 20 {
			t.Fatalf("bench publish with a publish token: %d of 20 succeeded (%s)", r.Ops, r.FirstError)
		}
		if r := bench(tokens[rpc.RoleRead]); r.Errors != 20 || !strings.Contains(r.FirstError, "PermissionDenied") {
			t.Fatalf("bench publish with a read token: %d of 20 failed (%s), want all with PermissionDenied", r.Errors, r.FirstError)
		}
	})
}

func TestTokenCreate(t *testing.T) {
	code, out, errOut := runCLI(t, "", "token", "create", "--role", "publish,read", "--name", "shop")
	if code != 0 || !strings.Contains(out, "jsctl_") || !strings.Contains(out, `roles: [publish, read]`) {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "", "token", "create", "--role", "root"); code != 1 || !strings.Contains(errOut, "--role") {
		t.Fatalf("bad role: exit %d %s", code, errOut)
	}
}
