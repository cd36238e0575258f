package main

// Changed block tracking: change IDs and QueryChangedDiskAreas.
//
// A change ID names the disk's contents at the moment it was issued; the
// harness records a fingerprint per 64 KiB block then. QueryChangedDiskAreas
// reports the blocks whose fingerprint differs between that moment and the
// snapshot asked about, so the answer is driven by what a test really wrote.

import (
	"crypto/rand"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// qcdaWindow is how much of a disk one QueryChangedDiskAreas call covers.
// Real servers answer a part of the disk and clients must continue from
// startOffset + length; a window smaller than the default disk keeps
// clients honest about that loop.
const qcdaWindow = 16 << 20

var changeIDPattern = regexp.MustCompile(`^([0-9a-fA-F]{2}( [0-9a-fA-F]{2}){7}-[0-9a-fA-F]{2}( [0-9a-fA-F]{2}){7})/([0-9]+)$`)

// newCBTEpoch returns the UUID part of a change ID, spelled like ESXi's:
// "52 3c 1d 7f 9a 2e 44 10-8b 5c 61 0e 3a 77 d2 5c".
func newCBTEpoch() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[0] = 0x52
	hex := make([]string, 16)
	for i, c := range b {
		hex[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(hex[:8], " ") + "-" + strings.Join(hex[8:], " ")
}

// issueChangeID gives the disk its next change ID and records the block
// fingerprints of flat as the state that ID names.
func (h *harness) issueChangeID(d *diskState, flat string) (string, error) {
	state, err := hashBlocks(flat, d.capacity)
	if err != nil {
		return "", err
	}
	d.cbtSeq++
	id := fmt.Sprintf("%s/%d", d.cbtEpoch, d.cbtSeq)
	d.states[id] = state
	return id, nil
}

// enableTracking starts change tracking on every disk that can have it:
// a fresh epoch, so change IDs from before are foreign from now on.
func (h *harness) enableTracking(st *vmState) error {
	for _, d := range st.disks {
		if d.independent() {
			continue
		}
		d.cbtEpoch = newCBTEpoch()
		d.cbtSeq = 0
		d.states = map[string][]blockHash{}
		id, err := h.issueChangeID(d, h.flatPath(d, d.top()))
		if err != nil {
			return err
		}
		d.changeID = id
	}
	return nil
}

func (h *harness) disableTracking(st *vmState) {
	for _, d := range st.disks {
		d.cbtEpoch = ""
		d.cbtSeq = 0
		d.states = map[string][]blockHash{}
		d.changeID = ""
		for _, f := range d.chain {
			f.changeID = ""
		}
	}
}

func (st *vmState) diskByKey(key int32) *diskState {
	for _, d := range st.disks {
		if d.key == key {
			return d
		}
	}
	return nil
}

func trackingEnabled(cfg *types.VirtualMachineConfigInfo) bool {
	return cfg != nil && cfg.ChangeTrackingEnabled != nil && *cfg.ChangeTrackingEnabled
}

func (h *harness) queryChangedDiskAreas(c *soapCall) soapReply {
	v, err := decodeVim(c)
	if err != nil {
		return faultReply(&types.InvalidRequest{}, "%v", err)
	}
	req := v.(*types.QueryChangedDiskAreas)
	vm := h.vmObject(c.this)
	if vm == nil {
		return faultReply(&types.ManagedObjectNotFound{Obj: c.this}, "The object '%s' has already been deleted or has not been completely created", c.this)
	}
	st := h.byRef[c.this]
	var d *diskState
	if st != nil {
		d = st.diskByKey(req.DeviceKey)
	}
	isDisk := false
	for _, dev := range vm.Config.Hardware.Device {
		if _, ok := dev.(*types.VirtualDisk); ok && dev.GetVirtualDevice().Key == req.DeviceKey {
			isDisk = true
		}
	}
	if !isDisk || d == nil {
		return faultReply(&types.InvalidArgument{InvalidProperty: "deviceKey"}, "")
	}
	if d.independent() {
		// Independent disks are outside snapshots, so tracking does not
		// cover them: "change tracking is not supported for this disk".
		return faultReply(&types.InvalidArgument{InvalidProperty: "deviceKey"}, "")
	}
	top := d.dsPath(d.top().rel)
	if !trackingEnabled(vm.Config) || d.cbtEpoch == "" {
		return faultReply(&types.FileFault{File: top}, "Error caused by file %s", top)
	}

	var flat string
	var frozen []blockHash
	if req.Snapshot != nil {
		snap := *req.Snapshot
		belongs := false
		for _, ref := range snapshotsOf(vm) {
			if ref == snap {
				belongs = true
			}
		}
		if !belongs {
			return faultReply(&types.NotFound{}, "The object or item referred to could not be found.")
		}
		i := d.frozenIndex(snap)
		if i < 0 {
			return faultReply(&types.InvalidArgument{InvalidProperty: "deviceKey"}, "")
		}
		f := d.chain[i]
		flat = h.flatPath(d, f)
		frozen = d.states[f.changeID]
	} else {
		// Without a snapshot the live disk is the end point, which only
		// holds still while the VM is off.
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
			return faultReply(&types.FileFault{File: top}, "Error caused by file %s", top)
		}
		flat = h.flatPath(d, d.top())
	}

	if req.StartOffset < 0 || req.StartOffset >= d.capacity {
		return faultReply(&types.InvalidArgument{InvalidProperty: "startOffset"}, "")
	}
	length := d.capacity - req.StartOffset
	if length > qcdaWindow {
		length = qcdaWindow
	}
	info := types.DiskChangeInfo{StartOffset: req.StartOffset, Length: length}

	var base []blockHash
	if req.ChangeId != "*" {
		id := strings.ToLower(strings.TrimSpace(req.ChangeId))
		m := changeIDPattern.FindStringSubmatch(id)
		if m == nil {
			return faultReply(&types.InvalidArgument{InvalidProperty: "changeId"}, "")
		}
		seq, _ := strconv.Atoi(m[4])
		state, ok := d.states[id]
		if !ok || !strings.EqualFold(m[1], d.cbtEpoch) || seq > d.cbtSeq {
			// A change ID from another disk, from before tracking was last
			// (re)enabled, or never issued.
			return faultReply(&types.FileFault{File: top}, "Error caused by file %s", top)
		}
		base = state
	}

	first := req.StartOffset / cbtBlockSize
	last := (req.StartOffset + length + cbtBlockSize - 1) / cbtBlockSize
	current := frozen
	if current == nil {
		current, err = hashBlockRange(flat, d.capacity, first, last)
		if err != nil {
			return faultReply(&types.FileFault{File: top}, "Error caused by file %s: %v", top, err)
		}
	}

	var runStart int64 = -1
	end := req.StartOffset + length
	flush := func(b int64) {
		if runStart < 0 {
			return
		}
		s := runStart * cbtBlockSize
		e := b * cbtBlockSize
		if s < req.StartOffset {
			s = req.StartOffset
		}
		if e > end {
			e = end
		}
		if e > s {
			info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: s, Length: e - s})
		}
		runStart = -1
	}
	for b := first; b < last; b++ {
		var changed bool
		if base == nil {
			changed = current[b] != (blockHash{}) // "*": the allocated blocks
		} else {
			changed = current[b] != base[b]
		}
		if changed && runStart < 0 {
			runStart = b
		} else if !changed {
			flush(b)
		}
	}
	flush(last)
	return soapReply{res: &types.QueryChangedDiskAreasResponse{Returnval: info}}
}
