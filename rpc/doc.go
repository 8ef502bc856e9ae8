// Package rpc is jsctl's gRPC API: the controller.v1.Controller service, plus
// grpc.health.v1 and server reflection so stock tools (grpcurl, ghz, health
// probes) work with nothing but the address.
//
// Protobuf types stop here: convert.go turns them into event types and back, and
// errors.go maps event's sentinel errors to gRPC codes in one function. A client
// mistake is never Internal or Unknown; an internal error is logged and the
// client sees only "internal error".
package rpc
