// Command kstatus prints kstatus's reading of Kubernetes objects, as Flux's health checks
// compute it: a JSON array of objects on stdin, one JSON line {"status", "message"} per object
// on stdout, in order. An object kstatus cannot read gets {"error"} instead, so that the lines
// still match the input; the exit code is then 1.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

type reading struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(input, &raws); err != nil {
		fail("stdin is not a JSON array: %v", err)
	}
	out := bufio.NewWriter(os.Stdout)
	encoder := json.NewEncoder(out)
	failed := false
	for index, raw := range raws {
		result := compute(raw)
		if result.Error != "" {
			failed = true
			result.Error = fmt.Sprintf("object %d: %s", index, result.Error)
		}
		if err := encoder.Encode(result); err != nil {
			fail("writing stdout: %v", err)
		}
	}
	if err := out.Flush(); err != nil {
		fail("writing stdout: %v", err)
	}
	if failed {
		os.Exit(1)
	}
}

func compute(raw json.RawMessage) reading {
	// Kubernetes' decoder, not encoding/json's: integers must come out as int64, which is what
	// kstatus's generation and replica lookups expect (float64 is an error there).
	var object map[string]interface{}
	if err := utiljson.Unmarshal(raw, &object); err != nil {
		return reading{Error: err.Error()}
	}
	if object == nil {
		return reading{Error: "not a JSON object"}
	}
	result, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		return reading{Error: err.Error()}
	}
	return reading{Status: result.Status.String(), Message: result.Message}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}
