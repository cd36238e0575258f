package main

// AuthorizationManager.DisableMethods / EnableMethods: the internal vCenter
// calls behind VDDK's PrepareForAccess / EndAccess.

import (
	"bytes"
	stdxml "encoding/xml"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type morefXML struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

func (m morefXML) ref() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: strings.TrimSpace(m.Type), Value: strings.TrimSpace(m.Value)}
}

// disabledMethodRequestXML is a DisabledMethodRequest {method, reasonId};
// a bare <method>name</method> is accepted too.
type disabledMethodRequestXML struct {
	Method string `xml:"method"`
	Reason string `xml:"reasonId"`
	Text   string `xml:",chardata"`
}

type disableMethodsXML struct {
	Entity   []morefXML                 `xml:"entity"`
	Method   []disabledMethodRequestXML `xml:"method"`
	SourceID string                     `xml:"sourceId"`
	Reason   string                     `xml:"reason"`
	Scope    bool                       `xml:"sessionScope"`
}

type enableMethodsXML struct {
	Entity   []morefXML `xml:"entity"`
	Method   []string   `xml:"method"`
	SourceID string     `xml:"sourceId"`
}

// decodeMethodElement decodes the method element of a SOAP body with the
// standard decoder, for calls outside urn:vim25 that govmomi has no types
// for.
func decodeMethodElement(body []byte, v interface{}) error {
	d := stdxml.NewDecoder(bytes.NewReader(body))
	depth := 0
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case stdxml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "Body" {
				inBody = true
			} else if inBody && depth == 3 {
				return d.DecodeElement(v, &t)
			}
		case stdxml.EndElement:
			depth--
		}
	}
}

// disabledSource reports who disabled method on the entity, or nil.
func (h *harness) disabledSource(ref types.ManagedObjectReference, method string) *disabledMethod {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range h.disabled[ref] {
		if d.method == method {
			c := d
			return &c
		}
	}
	return nil
}

// authorizationCheck answers what every AuthorizationManager call shares:
// ESXi has no such methods, and they live on the AuthorizationManager only.
func (h *harness) authorizationCheck(c *soapCall) *soapReply {
	if h.cfg.esx {
		// hostd implements neither call; VDDK checks about.apiType first and
		// reports "HostAgent is not a vCenter, cannot disable svmotion".
		r := faultReply(&types.NotSupported{}, "The operation is not supported on the object.")
		return &r
	}
	if c.this.Type != "AuthorizationManager" || c.this != h.client.ServiceContent.AuthorizationManager.Reference() {
		r := faultReply(&types.MethodNotFound{Receiver: c.this, Method: c.name}, "%s does not implement: %s", c.this, c.name)
		return &r
	}
	return nil
}

func (h *harness) checkEntities(refs []morefXML) (*soapReply, []types.ManagedObjectReference) {
	if len(refs) == 0 {
		r := faultReply(&types.InvalidArgument{InvalidProperty: "entity"}, "")
		return &r, nil
	}
	var out []types.ManagedObjectReference
	for _, m := range refs {
		ref := m.ref()
		if entityOf(ref) == nil {
			r := faultReply(&types.ManagedObjectNotFound{Obj: ref}, "The object '%s' has already been deleted or has not been completely created", ref)
			return &r, nil
		}
		out = append(out, ref)
	}
	return nil, out
}

func (h *harness) disableMethods(c *soapCall) soapReply {
	if r := h.authorizationCheck(c); r != nil {
		return *r
	}
	var req disableMethodsXML
	if err := decodeMethodElement(c.body, &req); err != nil {
		return faultReply(&types.InvalidRequest{}, "decode DisableMethods: %v", err)
	}
	if r, _ := h.checkEntities(req.Entity); r != nil {
		return *r
	}
	source := strings.TrimSpace(req.SourceID)
	if source == "" {
		return faultReply(&types.InvalidArgument{InvalidProperty: "sourceId"}, "")
	}
	var methods []disabledMethod
	for _, m := range req.Method {
		name := strings.TrimSpace(m.Method)
		if name == "" {
			name = strings.TrimSpace(m.Text)
		}
		if name == "" {
			return faultReply(&types.InvalidArgument{InvalidProperty: "method"}, "")
		}
		reason := strings.TrimSpace(m.Reason)
		if reason == "" {
			reason = strings.TrimSpace(req.Reason)
		}
		methods = append(methods, disabledMethod{method: name, source: source, reason: reason})
	}
	if len(methods) == 0 {
		return faultReply(&types.InvalidArgument{InvalidProperty: "method"}, "")
	}

	// All or nothing: a method another source disabled fails the call
	// before anything changes, naming that source.
	_, refs := h.checkEntities(req.Entity)
	for _, ref := range refs {
		for _, m := range methods {
			for _, d := range h.disabled[ref] {
				if d.method == m.method && d.source != source {
					return faultReply(&types.MethodAlreadyDisabledFault{SourceId: d.source},
						"Method %s already disabled by '%s' on %s", m.method, d.source, ref.Value)
				}
			}
		}
	}
	for _, ref := range refs {
		list := h.disabled[ref]
		for _, m := range methods {
			found := false
			for i := range list {
				if list[i].method == m.method {
					list[i] = m // same source: idempotent, keeps the newest reason
					found = true
				}
			}
			if !found {
				list = append(list, m)
			}
		}
		h.setDisabled(ref, list)
	}
	return soapReply{}
}

func (h *harness) enableMethods(c *soapCall) soapReply {
	if r := h.authorizationCheck(c); r != nil {
		return *r
	}
	var req enableMethodsXML
	if err := decodeMethodElement(c.body, &req); err != nil {
		return faultReply(&types.InvalidRequest{}, "decode EnableMethods: %v", err)
	}
	r, refs := h.checkEntities(req.Entity)
	if r != nil {
		return *r
	}
	source := strings.TrimSpace(req.SourceID)
	for _, ref := range refs {
		var keep []disabledMethod
		for _, d := range h.disabled[ref] {
			drop := false
			for _, m := range req.Method {
				// Only the source that disabled a method enables it again.
				if strings.TrimSpace(m) == d.method && d.source == source {
					drop = true
				}
			}
			if !drop {
				keep = append(keep, d)
			}
		}
		h.setDisabled(ref, keep)
	}
	return soapReply{}
}

// setDisabled records the harness's disabled methods of an entity and
// publishes them in its disabledMethod property, next to any the simulator
// put there itself.
func (h *harness) setDisabled(ref types.ManagedObjectReference, list []disabledMethod) {
	e := entityOf(ref)
	if e == nil {
		return
	}
	old := map[string]bool{}
	for _, d := range h.disabled[ref] {
		old[d.method] = true
	}
	if len(list) == 0 {
		delete(h.disabled, ref)
	} else {
		h.disabled[ref] = list
	}
	simulator.Map.WithLock(e, func() {
		var names []string
		for _, n := range e.Entity().DisabledMethod {
			if !old[n] {
				names = append(names, n)
			}
		}
		for _, d := range list {
			names = append(names, d.method)
		}
		simulator.Map.Update(e, []types.PropertyChange{{Name: "disabledMethod", Val: names}})
	})
}
