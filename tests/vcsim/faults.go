package main

// Scripted failures: /ferry-test/faults rules that make the next calls of a
// SOAP method fail with a chosen fault, stall, or make /folder downloads
// fail or break off mid-transfer.

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// folderMethod is the rule method name that matches /folder requests.
const folderMethod = "folder"

// maxFaultRules bounds the rule list a test can build up.
const maxFaultRules = 256

type faultRule struct {
	// Method is a SOAP method as sent on the wire ("CreateSnapshot_Task"),
	// or "folder" for /folder requests.
	Method string `json:"method"`
	// Entity limits the rule to calls on this moref value ("vm-42").
	Entity string `json:"entity,omitempty"`
	// Fault is a vim25 fault type ("FileFault", "InvalidState"); empty to
	// only delay.
	Fault   string `json:"fault,omitempty"`
	Message string `json:"message,omitempty"`
	// Count is how many calls the rule hits; negative means every call.
	Count int `json:"count"`
	// DelayMS stalls each hit call before it is answered.
	DelayMS int `json:"delay_ms,omitempty"`
	// InCall makes a *_Task method fail as a call (SOAP fault) instead of
	// returning a task that ends in error, which is how vCenter reports
	// most task failures.
	InCall bool `json:"in_call,omitempty"`
	// Status answers a /folder request with this HTTP status.
	Status int `json:"status,omitempty"`
	// TruncateAfter drops the /folder connection after this many body
	// bytes, like a proxy killed mid-transfer.
	TruncateAfter int64 `json:"truncate_after,omitempty"`
	// LeaveConsolidation, on RemoveSnapshot_Task without a fault: the
	// snapshot goes but its frozen files are not merged, as when one is
	// still locked by a host that has it open; the VM is left with
	// runtime.consolidationNeeded set until ConsolidateVMDisks_Task.
	LeaveConsolidation bool `json:"leave_consolidation,omitempty"`
}

func newFault(kind string) (types.BaseMethodFault, bool) {
	t, ok := types.TypeFunc()(kind)
	if !ok {
		return nil, false
	}
	f, ok := reflect.New(t).Interface().(types.BaseMethodFault)
	return f, ok
}

// take returns a copy of the first rule matching method and entity and
// uses one of its hits.
func (h *harness) take(method, entity string) *faultRule {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, r := range h.faults {
		if r.Method != method || (r.Entity != "" && r.Entity != entity) {
			continue
		}
		hit := *r
		if r.Count > 0 {
			r.Count--
			if r.Count == 0 {
				h.faults = append(h.faults[:i], h.faults[i+1:]...)
			}
		}
		return &hit
	}
	return nil
}

func (h *harness) matchFault(c *soapCall) *faultRule { return h.take(c.name, c.this.Value) }

// hasFault reports whether a rule would hit c, without using it up.
func (h *harness) hasFault(c *soapCall) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.faults {
		if r.Method == c.name && (r.Entity == "" || r.Entity == c.this.Value) {
			return true
		}
	}
	return false
}

func (h *harness) matchHTTPFault(r *http.Request) *faultRule { return h.take(folderMethod, "") }

// injectFault answers c as the rule says; false means the call goes on
// (a delay-only rule).
func (h *harness) injectFault(w http.ResponseWriter, c *soapCall, rule *faultRule) bool {
	if rule.DelayMS > 0 {
		time.Sleep(time.Duration(rule.DelayMS) * time.Millisecond)
	}
	if rule.Fault == "" {
		return false
	}
	fault, _ := newFault(rule.Fault)
	msg := rule.Message
	if msg == "" {
		msg = "ferry-vcsim injected " + rule.Fault
	}
	obj := simulator.Map.Get(c.this)
	if strings.HasSuffix(c.name, "_Task") && !rule.InCall && obj != nil {
		name := strings.ToLower(c.name[:1]) + strings.TrimSuffix(c.name[1:], "_Task") + "Task"
		reply := h.callHandler(func(h *harness, c *soapCall) soapReply {
			return h.runTask(obj, name, func() (types.AnyType, *taskFault) {
				return nil, &taskFault{fault: fault, msg: msg}
			})
		}, c)
		h.writeResponse(w, c, reply.res)
		return true
	}
	h.writeFault(w, c, fault, msg)
	return true
}

func (h *harness) injectHTTPFault(w http.ResponseWriter, r *http.Request, rule *faultRule) bool {
	if rule.DelayMS > 0 {
		time.Sleep(time.Duration(rule.DelayMS) * time.Millisecond)
	}
	if rule.Status != 0 {
		http.Error(w, http.StatusText(rule.Status), rule.Status)
		return true
	}
	return false
}

// truncatingWriter passes through the first left body bytes, then aborts
// the connection so the client sees a short read.
type truncatingWriter struct {
	http.ResponseWriter
	left   int64
	active bool
}

func (t *truncatingWriter) Write(p []byte) (int, error) {
	if !t.active {
		return t.ResponseWriter.Write(p)
	}
	if int64(len(p)) <= t.left {
		t.left -= int64(len(p))
		return t.ResponseWriter.Write(p)
	}
	t.ResponseWriter.Write(p[:t.left])
	t.left = 0
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	// net/http drops the connection without logging for this value.
	panic(http.ErrAbortHandler)
}

func (h *harness) controlListFaults(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := make([]faultRule, 0, len(h.faults))
	for _, f := range h.faults {
		list = append(list, *f)
	}
	writeJSON(w, http.StatusOK, list)
}

// controlAddFault adds a rule from a JSON body or from query parameters
// (method, entity, fault, message, count, delay_ms, in_call, status,
// truncate_after, leave_consolidation); count defaults to 1.
func (h *harness) controlAddFault(w http.ResponseWriter, r *http.Request) {
	rule := faultRule{Count: 1}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &rule); err != nil {
			controlError(w, http.StatusBadRequest, "fault rule: %v", err)
			return
		}
	} else {
		q := r.URL.Query()
		rule.Method = q.Get("method")
		rule.Entity = q.Get("entity")
		rule.Fault = q.Get("fault")
		rule.Message = q.Get("message")
		for _, p := range []struct {
			name string
			dst  interface{}
		}{{"count", &rule.Count}, {"delay_ms", &rule.DelayMS}, {"in_call", &rule.InCall}, {"status", &rule.Status}, {"truncate_after", &rule.TruncateAfter}, {"leave_consolidation", &rule.LeaveConsolidation}} {
			if v := q.Get(p.name); v != "" {
				if err := json.Unmarshal([]byte(v), p.dst); err != nil {
					controlError(w, http.StatusBadRequest, "%s=%q: %v", p.name, v, err)
					return
				}
			}
		}
	}
	if rule.Method == "" {
		controlError(w, http.StatusBadRequest, "a fault rule needs a method")
		return
	}
	if rule.Fault != "" {
		if _, ok := newFault(rule.Fault); !ok {
			controlError(w, http.StatusBadRequest, "%q is not a vim25 fault type", rule.Fault)
			return
		}
	}
	if rule.Count == 0 {
		rule.Count = 1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.faults) >= maxFaultRules {
		controlError(w, http.StatusTooManyRequests, "already %d fault rules", maxFaultRules)
		return
	}
	h.faults = append(h.faults, &rule)
	writeJSON(w, http.StatusOK, rule)
}

func (h *harness) controlClearFaults(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.faults)
	h.faults = nil
	writeJSON(w, http.StatusOK, map[string]int{"cleared": n})
}
