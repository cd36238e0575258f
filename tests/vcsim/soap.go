package main

// The SOAP front: every /sdk request passes here first. Calls the harness
// implements (or extends) are answered here; everything else goes on to the
// simulator's own ServeSDK unchanged.

import (
	"bytes"
	stdxml "encoding/xml"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime/debug"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// maxSOAPBody bounds a request body; real clients send a few KiB.
const maxSOAPBody = 16 << 20

const (
	nsVim25    = "urn:vim25"
	nsInternal = "urn:internalvim25"
)

type soapCall struct {
	name string // method element, e.g. QueryChangedDiskAreas
	ns   string // its namespace
	this types.ManagedObjectReference
	body []byte
	r    *http.Request
	// leaveConsolidation: a fault rule asked this RemoveSnapshot_Task to
	// leave its disks unmerged (faultRule.LeaveConsolidation).
	leaveConsolidation bool
}

// soapReply is what a handler returns: a response value, a fault, or
// pass=true to let the simulator answer the call itself.
type soapReply struct {
	res   interface{}
	fault types.BaseMethodFault
	msg   string
	pass  bool
}

type handlerFunc func(h *harness, c *soapCall) soapReply

// handlers lists the calls the harness answers. Each may still decline
// (pass) for objects it does not track.
var handlers = map[string]handlerFunc{
	"DisableMethods":               (*harness).disableMethods,
	"EnableMethods":                (*harness).enableMethods,
	"QueryChangedDiskAreas":        (*harness).queryChangedDiskAreas,
	"ConsolidateVMDisks_Task":      (*harness).consolidateVMDisks,
	"CreateSnapshot_Task":          (*harness).createSnapshot,
	"RemoveSnapshot_Task":          (*harness).removeSnapshot,
	"RemoveAllSnapshots_Task":      (*harness).removeAllSnapshots,
	"RevertToSnapshot_Task":        (*harness).revertToSnapshot,
	"RevertToCurrentSnapshot_Task": (*harness).revertToCurrentSnapshot,
	"ReconfigVM_Task":              (*harness).reconfigVM,
	"Destroy_Task":                 (*harness).destroyVM,
	"FindByUuid":                   (*harness).findByUUID,
	"CreateVM_Task":                (*harness).createVMTask,
}

// anonymous lists the methods the simulator serves without a session.
var anonymous = map[string]bool{
	"RetrieveServiceContent": true, "Login": true, "LoginByToken": true,
	"LoginExtensionByCertificate": true, "CloneSession": true,
	"RetrieveProperties": true, "RetrievePropertiesEx": true, "Fetch": true, "List": true,
}

func (h *harness) serveSDK(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.svc.ServeSDK(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSOAPBody+1))
	r.Body.Close()
	if err != nil || len(body) > maxSOAPBody {
		http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	pass := func() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		h.svc.ServeSDK(w, r)
	}

	c, err := peekCall(body)
	if err != nil {
		pass() // let the simulator report the malformed request
		return
	}
	c.r = r
	if (c.name == "RetrieveProperties" || c.name == "RetrievePropertiesEx") && !anonymousRetrieve(c) && !h.sessionValid(r) {
		// The simulator answers these without a session, with every
		// property in missingSet; vCenter fails the call.
		h.writeFault(w, c, &types.NotAuthenticated{NoPermission: types.NoPermission{Object: c.this, PrivilegeId: "System.View"}}, "")
		return
	}
	handler := handlers[c.name]
	disabledBy := h.disabledSource(c.this, c.name)
	if handler == nil && disabledBy == nil && !h.hasFault(c) {
		pass()
		return
	}
	if !anonymous[c.name] && !h.sessionValid(r) {
		if handler == nil {
			pass() // the simulator answers NotAuthenticated
			return
		}
		h.writeFault(w, c, &types.NotAuthenticated{NoPermission: types.NoPermission{Object: c.this, PrivilegeId: "System.View"}}, "")
		return
	}

	// vCenter refuses a disabled method before looking at its arguments.
	if disabledBy != nil {
		msg := fmt.Sprintf("The method is disabled by '%s'", disabledBy.source)
		h.writeFault(w, c, &types.MethodDisabled{Source: disabledBy.source}, msg)
		return
	}
	if rule := h.matchFault(c); rule != nil {
		c.leaveConsolidation = rule.LeaveConsolidation
		if h.injectFault(w, c, rule) {
			return
		}
	}
	if handler == nil {
		pass()
		return
	}

	reply := h.callHandler(handler, c)
	switch {
	case reply.pass:
		pass()
	case reply.fault != nil:
		h.writeFault(w, c, reply.fault, reply.msg)
	default:
		h.writeResponse(w, c, reply.res)
	}
}

// anonymousRetrieve reports whether a RetrieveProperties(Ex) call reads only
// what vCenter shows without a session: the ServiceInstance and the
// SessionManager (currentSession), with no traversal.
func anonymousRetrieve(c *soapCall) bool {
	v, err := decodeVim(c)
	if err != nil {
		return true // let the simulator report it
	}
	var specs []types.PropertyFilterSpec
	switch req := v.(type) {
	case *types.RetrieveProperties:
		specs = req.SpecSet
	case *types.RetrievePropertiesEx:
		specs = req.SpecSet
	}
	for _, spec := range specs {
		for _, o := range spec.ObjectSet {
			if len(o.SelectSet) > 0 || (o.Obj.Type != "SessionManager" && o.Obj.Type != "ServiceInstance") {
				return false
			}
		}
	}
	return true
}

// callHandler runs a handler under h.mu. A bug in a handler or in the
// simulator code it calls becomes a SystemError fault for that call instead
// of a crashed connection and a lock held forever.
func (h *harness) callHandler(fn handlerFunc, c *soapCall) (reply soapReply) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			log.Printf("%s on %s: panic: %v\n%s", c.name, c.this, p, debug.Stack())
			reply = faultReply(&types.SystemError{Reason: fmt.Sprint(p)}, "ferry-vcsim internal error in %s: %v", c.name, p)
		}
	}()
	return fn(h, c)
}

// peekCall finds the method element inside the SOAP body and its _this.
func peekCall(body []byte) (*soapCall, error) {
	d := stdxml.NewDecoder(bytes.NewReader(body))
	depth := 0
	inBody := false
	c := &soapCall{body: body}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case stdxml.StartElement:
			depth++
			switch {
			case depth == 2 && t.Name.Local == "Body":
				inBody = true
			case inBody && depth == 3:
				c.name = t.Name.Local
				c.ns = t.Name.Space
			case inBody && depth == 4 && t.Name.Local == "_this":
				for _, a := range t.Attr {
					if a.Name.Local == "type" {
						c.this.Type = a.Value
					}
				}
				var text string
				if err := d.DecodeElement(&text, &t); err != nil {
					return nil, err
				}
				depth--
				c.this.Value = strings.TrimSpace(text)
				return c, nil
			}
		case stdxml.EndElement:
			depth--
			if inBody && depth == 2 && c.name != "" {
				return c, nil // a method without _this
			}
		}
	}
}

// decodeVim decodes the request into its govmomi type, e.g.
// *types.QueryChangedDiskAreas.
func decodeVim(c *soapCall) (interface{}, error) {
	m, err := simulator.UnmarshalBody(types.TypeFunc(), c.body)
	if err != nil {
		return nil, err
	}
	return m.Body, nil
}

// sessionValid asks the simulator whether the request's session cookie
// belongs to a live session, by replaying it on a cheap authenticated call.
func (h *harness) sessionValid(r *http.Request) bool {
	if r.Header.Get("Cookie") == "" {
		return false
	}
	const probe = `<?xml version="1.0" encoding="UTF-8"?>` +
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">` +
		`<soapenv:Body><CurrentTime xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime>` +
		`</soapenv:Body></soapenv:Envelope>`
	req := httptest.NewRequest(http.MethodPost, "/sdk", strings.NewReader(probe))
	req.Header.Set("Cookie", r.Header.Get("Cookie"))
	req.Header.Set("User-Agent", r.UserAgent())
	req.RemoteAddr = r.RemoteAddr
	rec := httptest.NewRecorder()
	h.svc.ServeSDK(rec, req)
	return rec.Code == http.StatusOK
}

const envelopeHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"` +
	` xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"` +
	` xmlns:xsd="http://www.w3.org/2001/XMLSchema"` +
	` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`

const envelopeTail = `</soapenv:Body></soapenv:Envelope>`

func (h *harness) writeEnvelope(w http.ResponseWriter, status int, inner []byte) {
	var out bytes.Buffer
	out.WriteString(envelopeHead)
	out.Write(inner)
	out.WriteString(envelopeTail)
	if h.cfg.trace {
		log.Printf("harness response: %s", out.String())
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	w.Write(out.Bytes())
}

// responseNamespace echoes the request's namespace, so a call made in
// urn:internalvim25 is answered there too.
func responseNamespace(c *soapCall) string {
	if c.ns == nsInternal {
		return nsInternal
	}
	return nsVim25
}

func (h *harness) writeResponse(w http.ResponseWriter, c *soapCall, res interface{}) {
	var buf bytes.Buffer
	start := xml.StartElement{Name: xml.Name{Space: responseNamespace(c), Local: c.name + "Response"}}
	enc := xml.NewEncoder(&buf)
	var err error
	if res == nil {
		err = enc.EncodeToken(start)
		if err == nil {
			err = enc.EncodeToken(start.End())
		}
	} else {
		err = enc.EncodeElement(res, start)
	}
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		log.Printf("encode %s response: %v", c.name, err)
		http.Error(w, "encode error", http.StatusInternalServerError)
		return
	}
	h.writeEnvelope(w, http.StatusOK, buf.Bytes())
}

// faultMessages are the texts vSphere puts in faultstring for common faults
// when a call gives none.
var faultMessages = map[string]string{
	"NotAuthenticated": "The session is not authenticated.",
	"NotSupported":     "The operation is not supported on the object.",
	"InvalidArgument":  "A specified parameter was not correct: ",
	"InvalidState":     "The operation is not allowed in the current state.",
	"NotFound":         "The object or item referred to could not be found.",
	"MethodDisabled":   "The method is disabled.",
}

func (h *harness) writeFault(w http.ResponseWriter, c *soapCall, fault types.BaseMethodFault, msg string) {
	kind := reflect.TypeOf(fault).Elem().Name()
	if msg == "" {
		msg = faultMessages[kind]
		if ia, ok := fault.(*types.InvalidArgument); ok {
			msg += ia.InvalidProperty
		}
		if msg == "" {
			msg = kind
		}
	}
	var buf bytes.Buffer
	buf.WriteString(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>`)
	stdxml.EscapeText(&buf, []byte(msg))
	buf.WriteString(`</faultstring><detail>`)
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{
		Name: xml.Name{Local: kind + "Fault"},
		Attr: []xml.Attr{
			{Name: xml.Name{Local: "xmlns"}, Value: nsVim25},
			{Name: xml.Name{Local: "xsi:type"}, Value: kind},
		},
	}
	if err := enc.EncodeElement(fault, start); err != nil {
		log.Printf("encode %s fault: %v", kind, err)
	}
	enc.Flush()
	buf.WriteString(`</detail></soapenv:Fault>`)
	h.writeEnvelope(w, http.StatusInternalServerError, buf.Bytes())
}

// taskResponse is the body of every *_Task response.
type taskResponse struct {
	Returnval types.ManagedObjectReference `xml:"returnval"`
}

// taskFault is a fault a task ends with, and the message vSphere would put
// in info.error.localizedMessage.
type taskFault struct {
	fault types.BaseMethodFault
	msg   string
}

func newTaskFault(fault types.BaseMethodFault, format string, args ...interface{}) *taskFault {
	return &taskFault{fault: fault, msg: fmt.Sprintf(format, args...)}
}

// runTask creates a simulator Task for obj, runs fn in it (synchronously,
// as the simulator runs all its tasks) and returns the reply that hands the
// task to the client.
func (h *harness) runTask(obj mo.Reference, name string, fn func() (types.AnyType, *taskFault)) soapReply {
	var tf *taskFault
	task := simulator.CreateTask(obj, name, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		res, f := fn()
		if f != nil {
			tf = f
			return nil, f.fault
		}
		return res, nil
	})
	// vCenter names the entity and the user; the simulator puts the moref
	// and "vcsim" there.
	if e, ok := obj.(mo.Entity); ok {
		task.Info.EntityName = e.Entity().Name
	}
	task.Info.Reason = &types.TaskReasonUser{UserName: h.cfg.username}
	ref := task.Run()
	if tf != nil && tf.msg != "" {
		simulator.Map.Update(task, []types.PropertyChange{{
			Name: "info.error",
			Val:  types.LocalizedMethodFault{Fault: tf.fault, LocalizedMessage: tf.msg},
		}})
	}
	return soapReply{res: &taskResponse{Returnval: ref}}
}

func faultReply(fault types.BaseMethodFault, format string, args ...interface{}) soapReply {
	return soapReply{fault: fault, msg: fmt.Sprintf(format, args...)}
}

// simulatorTaskResult extracts the outcome of a task-returning simulator
// method from its response body; simulator tasks finish before the method
// returns.
func simulatorTaskResult(body soap.HasFault) (types.AnyType, *taskFault) {
	if f := body.Fault(); f != nil {
		fault, ok := f.Detail.Fault.(types.BaseMethodFault)
		if !ok {
			fault = &types.SystemError{Reason: f.String}
		}
		return nil, &taskFault{fault: fault, msg: f.String}
	}
	res := reflect.ValueOf(body).Elem().FieldByName("Res")
	if !res.IsValid() || res.IsNil() {
		return nil, newTaskFault(&types.SystemError{Reason: "no result"}, "the simulator gave no result")
	}
	ref, ok := res.Elem().FieldByName("Returnval").Interface().(types.ManagedObjectReference)
	if !ok {
		return nil, newTaskFault(&types.SystemError{Reason: "no task"}, "the simulator gave no task")
	}
	task, ok := simulator.Map.Get(ref).(*simulator.Task)
	if !ok {
		return nil, newTaskFault(&types.SystemError{Reason: "task vanished"}, "the simulator's task vanished")
	}
	if task.Info.Error != nil {
		return nil, &taskFault{fault: task.Info.Error.Fault, msg: task.Info.Error.LocalizedMessage}
	}
	return task.Info.Result, nil
}

// taskOutcome reads a finished simulator task's result or fault.
func (h *harness) taskOutcome(ref types.ManagedObjectReference) (types.AnyType, *taskFault) {
	task, ok := simulator.Map.Get(ref).(*simulator.Task)
	if !ok {
		return nil, newTaskFault(&types.ManagedObjectNotFound{Obj: ref}, "no task %s", ref)
	}
	if task.Info.Error != nil {
		return nil, &taskFault{fault: task.Info.Error.Fault, msg: task.Info.Error.LocalizedMessage}
	}
	return task.Info.Result, nil
}
