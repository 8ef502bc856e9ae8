// Package proto holds the jsctl API definition (controller/v1/controller.proto)
// and its generated Go code, which is committed so that building needs no protoc.
//
// Regenerate after editing the .proto file, from the repository root:
//
//	go generate ./proto
//
// buf and the protoc-gen-go plugins are pinned in tools/go.mod and run through
// `go tool`, so nothing else has to be installed.
package proto

//go:generate go tool -modfile=../tools/go.mod buf lint
//go:generate go tool -modfile=../tools/go.mod buf generate
