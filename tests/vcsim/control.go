package main

// HTTP routes: /sdk, the datastore /folder access, and the /ferry-test
// control endpoints tests use to look inside and script the simulator.

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// maxControlWrite bounds the body of POST /ferry-test/write.
const maxControlWrite = 64 << 20

func (h *harness) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/sdk", h.serveSDK)
	mux.HandleFunc("/sdk/vimServiceVersions.xml", h.svc.ServiceVersions)
	mux.HandleFunc("/folder/", h.serveFolder)
	mux.HandleFunc("/folder", h.serveFolder)
	mux.HandleFunc("/ferry-test/", h.serveControl)
	mux.HandleFunc("/about", h.svc.About)
	return mux
}

// serveFolder is the datastore file access of vCenter and ESXi:
// /folder/<path>?dcPath=<datacenter>&dsName=<datastore>, with Range. Like
// the real servers it wants a session cookie (or HTTP basic credentials).
func (h *harness) serveFolder(w http.ResponseWriter, r *http.Request) {
	if !h.folderAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="VMware HTTP server"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	if rule := h.matchHTTPFault(r); rule != nil {
		if h.injectHTTPFault(w, r, rule) {
			return
		}
		w = &truncatingWriter{ResponseWriter: w, left: rule.TruncateAfter, active: rule.TruncateAfter > 0}
	}
	h.svc.ServeDatastore(w, r)
}

func (h *harness) folderAuthorized(r *http.Request) bool {
	if user, pass, ok := r.BasicAuth(); ok {
		return subtle.ConstantTimeCompare([]byte(user), []byte(h.cfg.username)) == 1 &&
			subtle.ConstantTimeCompare([]byte(pass), []byte(h.cfg.password)) == 1
	}
	return h.sessionValid(r)
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func controlError(w http.ResponseWriter, status int, format string, args ...interface{}) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (h *harness) serveControl(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/ferry-test/")
	type endpoint struct {
		method string
		fn     func(http.ResponseWriter, *http.Request)
	}
	endpoints := map[string][]endpoint{
		"info":                 {{http.MethodGet, h.controlInfo}},
		"disks":                {{http.MethodGet, h.controlDisks}},
		"write":                {{http.MethodPost, h.controlWrite}},
		"resize":               {{http.MethodPost, h.controlResize}},
		"move":                 {{http.MethodPost, h.controlMove}},
		"consolidation-needed": {{http.MethodPost, h.controlConsolidation}},
		"expire-sessions":      {{http.MethodPost, h.controlExpireSessions}},
		"power":                {{http.MethodPost, h.controlPower}},
		"faults":               {{http.MethodGet, h.controlListFaults}, {http.MethodPost, h.controlAddFault}, {http.MethodDelete, h.controlClearFaults}},
	}
	list, ok := endpoints[name]
	if !ok {
		controlError(w, http.StatusNotFound, "no control endpoint %q", name)
		return
	}
	for _, e := range list {
		if e.method == r.Method {
			e.fn(w, r)
			return
		}
	}
	controlError(w, http.StatusMethodNotAllowed, "%s /ferry-test/%s is not supported", r.Method, name)
}

func (h *harness) controlInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.readyInfo())
}

func (h *harness) vmParam(w http.ResponseWriter, r *http.Request) *vmState {
	name := r.URL.Query().Get("vm")
	st, ok := h.vms[name]
	if !ok {
		controlError(w, http.StatusNotFound, "no inventory VM %q", name)
		return nil
	}
	return st
}

// diskParam is vmParam plus the disk=<device key> parameter; on failure it
// has answered and d is nil. The caller holds h.mu.
func (h *harness) diskParam(w http.ResponseWriter, r *http.Request) (*vmState, *diskState) {
	st := h.vmParam(w, r)
	if st == nil {
		return nil, nil
	}
	key, err := strconv.ParseInt(r.URL.Query().Get("disk"), 10, 32)
	if err != nil {
		controlError(w, http.StatusBadRequest, "want disk=<device key>")
		return nil, nil
	}
	d := st.diskByKey(int32(key))
	if d == nil {
		controlError(w, http.StatusNotFound, "VM %s has no disk %d", st.name, key)
		return nil, nil
	}
	return st, d
}

type fileJSON struct {
	File           string `json:"file"`
	FlatPath       string `json:"flat_path"`
	DescriptorPath string `json:"descriptor_path"`
	Snapshot       string `json:"snapshot,omitempty"`
	Orphan         bool   `json:"orphan,omitempty"`
	ChangeID       string `json:"change_id,omitempty"`
}

type diskChainJSON struct {
	Key      int32      `json:"key"`
	UUID     string     `json:"uuid"`
	Size     int64      `json:"size"`
	Mode     string     `json:"mode"`
	ChangeID string     `json:"change_id,omitempty"`
	Live     fileJSON   `json:"live"`
	Chain    []fileJSON `json:"chain"`
}

type snapshotJSON struct {
	Moref string `json:"moref"`
	Name  string `json:"name"`
}

type vmDisksJSON struct {
	VM                  string          `json:"vm"`
	Moref               string          `json:"moref"`
	PowerState          string          `json:"power_state"`
	Host                string          `json:"host"`
	Folder              string          `json:"folder"`
	ResourcePool        string          `json:"resource_pool"`
	ChangeTracking      bool            `json:"change_tracking"`
	ConsolidationNeeded bool            `json:"consolidation_needed"`
	CurrentSnapshot     string          `json:"current_snapshot,omitempty"`
	Snapshots           []snapshotJSON  `json:"snapshots"`
	Disks               []diskChainJSON `json:"disks"`
}

func (h *harness) fileInfo(d *diskState, f *diskFile) fileJSON {
	j := fileJSON{
		File:           d.dsPath(f.rel),
		FlatPath:       h.flatPath(d, f),
		DescriptorPath: h.descPath(d, f),
		Orphan:         f.orphan,
		ChangeID:       f.changeID,
	}
	if f.snapshot != nil {
		j.Snapshot = f.snapshot.Value
	}
	return j
}

// entityName is the name of the inventory object ref names, or "".
func entityName(ref *types.ManagedObjectReference) string {
	if ref == nil {
		return ""
	}
	if e, ok := simulator.Map.Get(*ref).(mo.Entity); ok {
		return e.Entity().Name
	}
	return ""
}

func (h *harness) controlDisks(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.vmParam(w, r)
	if st == nil {
		return
	}
	vm := h.vmObject(st.ref)
	out := vmDisksJSON{VM: st.name, Moref: st.ref.Value, Snapshots: []snapshotJSON{}}
	if vm != nil {
		out.PowerState = string(vm.Runtime.PowerState)
		out.Host = entityName(vm.Runtime.Host)
		out.Folder = entityName(vm.Parent)
		out.ResourcePool = entityName(vm.ResourcePool)
		out.ChangeTracking = trackingEnabled(vm.Config)
		out.ConsolidationNeeded = vm.Runtime.ConsolidationNeeded != nil && *vm.Runtime.ConsolidationNeeded
		if vm.Snapshot != nil {
			if vm.Snapshot.CurrentSnapshot != nil {
				out.CurrentSnapshot = vm.Snapshot.CurrentSnapshot.Value
			}
			var walk func([]types.VirtualMachineSnapshotTree)
			walk = func(tree []types.VirtualMachineSnapshotTree) {
				for _, t := range tree {
					out.Snapshots = append(out.Snapshots, snapshotJSON{Moref: t.Snapshot.Value, Name: t.Name})
					walk(t.ChildSnapshotList)
				}
			}
			walk(vm.Snapshot.RootSnapshotList)
		}
	}
	for _, d := range st.disks {
		dj := diskChainJSON{Key: d.key, UUID: d.uuid, Size: d.capacity, Mode: string(d.mode), ChangeID: d.changeID}
		dj.Live = h.fileInfo(d, d.top())
		dj.Live.ChangeID = d.changeID
		for _, f := range d.chain {
			dj.Chain = append(dj.Chain, h.fileInfo(d, f))
		}
		out.Disks = append(out.Disks, dj)
	}
	writeJSON(w, http.StatusOK, out)
}

// controlWrite writes the request body into a VM's live disk, as the
// guest would: POST /ferry-test/write?vm=NAME&disk=KEY&offset=N.
func (h *harness) controlWrite(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, d := h.diskParam(w, r)
	if d == nil {
		return
	}
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil {
		controlError(w, http.StatusBadRequest, "want offset=<bytes>")
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxControlWrite+1))
	if err != nil || len(data) > maxControlWrite {
		controlError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes or unreadable", maxControlWrite)
		return
	}
	if offset < 0 || offset > d.capacity || int64(len(data)) > d.capacity-offset {
		controlError(w, http.StatusBadRequest, "write of %d bytes at %d runs past the disk's %d bytes", len(data), offset, d.capacity)
		return
	}
	flat := h.flatPath(d, d.top())
	f, err := os.OpenFile(flat, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteAt(data, offset)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		controlError(w, http.StatusInternalServerError, "write %s: %v", flat, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{
		"file": d.dsPath(d.top().rel), "flat_path": flat, "offset": offset, "length": len(data),
	})
}

func (h *harness) controlConsolidation(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.vmParam(w, r)
	if st == nil {
		return
	}
	value := true
	if v := r.URL.Query().Get("value"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			controlError(w, http.StatusBadRequest, "value=%q is not a boolean", v)
			return
		}
		value = b
	}
	h.setConsolidationNeeded(st.ref, value)
	writeJSON(w, http.StatusOK, map[string]interface{}{"vm": st.name, "consolidation_needed": value})
}

// controlExpireSessions ends every session, as a vCenter restart or an idle
// timeout would; clients must notice NotAuthenticated and log in again.
func (h *harness) controlExpireSessions(w http.ResponseWriter, r *http.Request) {
	ctx := context.Background()
	smRef := h.client.ServiceContent.SessionManager.Reference()
	var sm mo.SessionManager
	if err := property.DefaultCollector(h.client).RetrieveOne(ctx, smRef, []string{"sessionList"}, &sm); err != nil {
		controlError(w, http.StatusInternalServerError, "list sessions: %v", err)
		return
	}
	var ids []string
	for _, s := range sm.SessionList {
		ids = append(ids, s.Key)
	}
	if len(ids) > 0 {
		if _, err := methods.TerminateSession(ctx, h.client, &types.TerminateSession{This: smRef, SessionId: ids}); err != nil {
			controlError(w, http.StatusInternalServerError, "terminate sessions: %v", err)
			return
		}
	}
	log.Printf("control: expired %d session(s)", len(ids))
	writeJSON(w, http.StatusOK, map[string]int{"expired": len(ids)})
}

// controlPower sets a VM's power state without a task, for tests that need
// a powered-off VM: POST /ferry-test/power?vm=NAME&state=on|off.
func (h *harness) controlPower(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	st := h.vmParam(w, r)
	h.mu.Unlock()
	if st == nil {
		return
	}
	state := r.URL.Query().Get("state")
	ctx := context.Background()
	var err error
	var task types.ManagedObjectReference
	switch state {
	case "on":
		var res *types.PowerOnVM_TaskResponse
		res, err = methods.PowerOnVM_Task(ctx, h.client, &types.PowerOnVM_Task{This: st.ref})
		if err == nil {
			task = res.Returnval
		}
	case "off":
		var res *types.PowerOffVM_TaskResponse
		res, err = methods.PowerOffVM_Task(ctx, h.client, &types.PowerOffVM_Task{This: st.ref})
		if err == nil {
			task = res.Returnval
		}
	default:
		controlError(w, http.StatusBadRequest, "state=%q: want on or off", state)
		return
	}
	if err == nil {
		_, tf := h.taskOutcome(task)
		if tf != nil {
			err = fmt.Errorf("%s", tf.msg)
		}
	}
	if err != nil {
		controlError(w, http.StatusConflict, "power %s %s: %v", state, st.name, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"vm": st.name, "power_state": state})
}

// controlResize grows a disk like an admin extending it in vSphere
// (ReconfigVM_Task edit of capacityInKB, which the simulator alone does not
// apply to files): the flat file and the descriptor grow, the device's
// capacity follows. Like vSphere it refuses a disk with snapshots and a
// smaller size. Change tracking continues in the same epoch; the new
// capacity shows in the next change IDs' states.
func (h *harness) controlResize(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, d := h.diskParam(w, r)
	if d == nil {
		return
	}
	key := d.key
	size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || size <= 0 || size%1024 != 0 {
		controlError(w, http.StatusBadRequest, "want size=<bytes, a multiple of 1024>")
		return
	}
	if len(d.chain) != 1 {
		controlError(w, http.StatusConflict, "disk %d of %s has snapshots: vSphere cannot extend it", key, st.name)
		return
	}
	if size < d.capacity {
		controlError(w, http.StatusBadRequest, "disk %d is %d bytes: vSphere only grows disks", key, d.capacity)
		return
	}
	if err := os.Truncate(h.flatPath(d, d.top()), size); err != nil {
		controlError(w, http.StatusInternalServerError, "grow %s: %v", h.flatPath(d, d.top()), err)
		return
	}
	d.capacity = size
	if err := writeDescriptor(h.descPath(d, d.top()), h.descriptorFor(d, 0)); err != nil {
		controlError(w, http.StatusInternalServerError, "descriptor: %v", err)
		return
	}
	if vm := h.vmObject(st.ref); vm != nil {
		simulator.Map.WithLock(vm, func() {
			devices := make([]types.BaseVirtualDevice, len(vm.Config.Hardware.Device))
			copy(devices, vm.Config.Hardware.Device)
			for i, dev := range devices {
				if disk, ok := dev.(*types.VirtualDisk); ok && disk.Key == key {
					c := *disk
					c.CapacityInKB = size / 1024
					c.CapacityInBytes = size
					devices[i] = &c
				}
			}
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
		})
	}
	h.syncVM(st)
	writeJSON(w, http.StatusOK, map[string]interface{}{
		"vm": st.name, "disk": key, "size": size, "flat_path": h.flatPath(d, d.top()),
	})
}

// controlMove moves a disk without snapshots, as a Storage vMotion of that
// disk does: to another datastore its host mounts (datastore=) and/or
// another folder (dir=); the descriptor and flat file move, the device's
// backing follows. Change tracking continues; what a backup makes of the
// new path is the client's business.
func (h *harness) controlMove(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, d := h.diskParam(w, r)
	if d == nil {
		return
	}
	key, q := d.key, r.URL.Query()
	to, dir := q.Get("datastore"), q.Get("dir")
	if to == "" {
		to = d.datastore
	}
	if dir == "" {
		dir = d.dir
	}
	if strings.Contains(dir, "..") || strings.HasPrefix(dir, "/") {
		controlError(w, http.StatusBadRequest, "dir %q: a folder inside the datastore", dir)
		return
	}
	mounted := false
	for _, host := range h.hosts {
		if host.name != st.host {
			continue
		}
		for _, ds := range host.datastores {
			mounted = mounted || ds == to
		}
	}
	if !mounted {
		controlError(w, http.StatusConflict, "host %s of %s does not mount datastore %q", st.host, st.name, to)
		return
	}
	if len(d.chain) != 1 || (to == d.datastore && dir == d.dir) {
		controlError(w, http.StatusConflict, "disk %d of %s has snapshots or is there already", key, st.name)
		return
	}
	f := d.top()
	rel := path.Join(dir, path.Base(f.rel))
	if err := os.MkdirAll(path.Dir(h.localPath(to, rel)), 0o755); err != nil {
		controlError(w, http.StatusInternalServerError, "mkdir: %v", err)
		return
	}
	for _, p := range [][2]string{{f.rel, rel}, {flatName(f.rel), flatName(rel)}} {
		if err := os.Rename(h.localPath(d.datastore, p[0]), h.localPath(to, p[1])); err != nil {
			controlError(w, http.StatusInternalServerError, "move %s: %v", p[0], err)
			return
		}
	}
	d.datastore, d.dir, f.rel = to, dir, rel
	h.syncVM(st)
	writeJSON(w, http.StatusOK, map[string]interface{}{
		"vm": st.name, "disk": key, "file": d.dsPath(f.rel), "flat_path": h.flatPath(d, f),
	})
}
