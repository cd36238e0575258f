package main

// SearchIndex.FindByUuid as vCenter answers it: case-insensitive, scoped
// to a datacenter when one is given, BIOS or instance UUID for VMs, the
// hardware UUID for hosts; the first match in a stable order.

import (
	"sort"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func (h *harness) findByUUID(c *soapCall) soapReply {
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.FindByUuid)
	want := strings.ToLower(strings.TrimSpace(req.Uuid))
	res := &types.FindByUuidResponse{}

	kind := "HostSystem"
	if req.VmSearch {
		kind = "VirtualMachine"
	}
	var refs []types.ManagedObjectReference
	for _, e := range simulator.Map.All(kind) {
		if req.Datacenter != nil && !underDatacenter(e, *req.Datacenter) {
			continue
		}
		var got string
		switch x := e.(type) {
		case *simulator.VirtualMachine:
			if x.Config == nil {
				continue
			}
			got = x.Config.Uuid
			if req.InstanceUuid != nil && *req.InstanceUuid {
				got = x.Config.InstanceUuid
			}
		case *simulator.HostSystem:
			got = x.Summary.Hardware.Uuid
		}
		if got != "" && strings.ToLower(got) == want {
			refs = append(refs, e.Reference())
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Value < refs[j].Value })
	if len(refs) > 0 {
		res.Returnval = &refs[0]
	}
	return soapReply{res: res}
}

// underDatacenter reports whether e sits below the datacenter dc.
func underDatacenter(e mo.Entity, dc types.ManagedObjectReference) bool {
	for p := e.Entity().Parent; p != nil; {
		if *p == dc {
			return true
		}
		parent := entityOf(*p)
		if parent == nil {
			return false
		}
		p = parent.Entity().Parent
	}
	return false
}
