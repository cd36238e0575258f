package main

// Disk files: VMDK descriptors, deterministic contents, sparse copies and the
// per-block fingerprints that changed block tracking compares.

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
	"syscall"
)

const (
	// cbtBlockSize is the granularity of change tracking: a write anywhere in
	// a block reports the whole block, as ESXi's .ctk bitmap does.
	cbtBlockSize = 64 << 10
	// fillRegion is the unit in which the generated disk contents switch
	// between holes, text and random data.
	fillRegion = 1 << 20
	sectorSize = 512
	// copyBuf bounds the memory a sparse copy or a hash pass uses.
	copyBuf = 1 << 20

	seekData = 3 // SEEK_DATA, Linux
	seekHole = 4 // SEEK_HOLE, Linux
)

// blockHash fingerprints one cbtBlockSize block; the zero value means the
// block reads as zeros.
type blockHash [16]byte

// stableBytes derives n deterministic bytes from a label, so UUIDs and
// contents are the same on every run.
func stableBytes(label string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		sum := sha1.Sum([]byte(fmt.Sprintf("%s#%d", label, i)))
		out = append(out, sum[:]...)
	}
	return out[:n]
}

func formatUUID(b []byte) string {
	h := fmt.Sprintf("%x", b[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// vmUUID gives a VM a stable UUID whose first byte follows vCenter's habit:
// BIOS UUIDs of vCenter-created VMs start with 42, instance UUIDs with 50.
func vmUUID(kind, vm string, first byte) string {
	b := stableBytes("ferry-vcsim/"+kind+"/"+vm, 16)
	b[0] = first
	b[6] = b[6]&0x0f | 0x40 // looks like a version 4 UUID
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// diskUUID returns a virtual disk UUID as vSphere shows it in
// backing.uuid: "6000C29" followed by 25 hex digits in 8-4-4-4-12 groups,
// e.g. 6000C29d-3c54-794f-ac5f-7a3e5b2b4b5a.
func diskUUID(label string) string {
	h := fmt.Sprintf("%x", stableBytes("ferry-vcsim/disk/"+label, 16))
	h = "6000C29" + h[7:]
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ddbUUID converts backing.uuid into the descriptor's ddb.uuid spelling:
// "60 00 C2 9d 3c 54 79 4f-ac 5f 7a 3e 5b 2b 4b 5a".
func ddbUUID(uuid string) string {
	h := strings.ReplaceAll(uuid, "-", "")
	var parts []string
	for i := 0; i+2 <= len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	if len(parts) != 16 {
		return uuid
	}
	return strings.Join(parts[:8], " ") + "-" + strings.Join(parts[8:], " ")
}

var ddbUUIDLine = regexp.MustCompile(`(?m)^ddb\.uuid\s*=\s*"([0-9A-Fa-f ]{23})-([0-9A-Fa-f ]{23})"`)

// uuidFromDescriptor reads ddb.uuid back as backing.uuid, or "".
func uuidFromDescriptor(text string) string {
	m := ddbUUIDLine.FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	h := strings.ReplaceAll(m[1]+m[2], " ", "")
	if len(h) != 32 {
		return ""
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

type descriptorInfo struct {
	capacity    int64
	flatName    string // extent file name, relative to the descriptor
	uuid        string
	adapterType string // ddb.adapterType: lsilogic, pvscsi, ide
	cid         uint32
	parentCID   uint32
	parentHint  string // parentFileNameHint, "" for a base disk
}

// descriptorText renders a monolithicFlat-style VMFS descriptor. Snapshot
// children carry parentFileNameHint like real deltas, but their extent is a
// full flat copy (this simulator never writes SEsparse).
func descriptorText(d descriptorInfo) string {
	sectors := d.capacity / sectorSize
	cylinders := sectors / (255 * 63)
	if cylinders < 1 {
		cylinders = 1
	}
	parentCID := "ffffffff"
	if d.parentHint != "" {
		parentCID = fmt.Sprintf("%08x", d.parentCID)
	}
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\n")
	b.WriteString("version=1\n")
	b.WriteString("encoding=\"UTF-8\"\n")
	fmt.Fprintf(&b, "CID=%08x\n", d.cid)
	fmt.Fprintf(&b, "parentCID=%s\n", parentCID)
	b.WriteString("createType=\"vmfs\"\n")
	if d.parentHint != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", d.parentHint)
	}
	b.WriteString("\n# Extent description\n")
	fmt.Fprintf(&b, "RW %d VMFS \"%s\"\n", sectors, d.flatName)
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	fmt.Fprintf(&b, "ddb.adapterType = \"%s\"\n", d.adapterType)
	fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\n", cylinders)
	b.WriteString("ddb.geometry.heads = \"255\"\n")
	b.WriteString("ddb.geometry.sectors = \"63\"\n")
	fmt.Fprintf(&b, "ddb.longContentID = \"%032x\"\n", stableBytes(fmt.Sprintf("%s/%08x", d.uuid, d.cid), 16))
	b.WriteString("ddb.thinProvisioned = \"1\"\n")
	fmt.Fprintf(&b, "ddb.uuid = \"%s\"\n", ddbUUID(d.uuid))
	b.WriteString("ddb.virtualHWVersion = \"13\"\n")
	return b.String()
}

// flatName maps a descriptor name to its extent: x.vmdk -> x-flat.vmdk, the
// convention govmomi's simulator also uses for its own disk files.
func flatName(descriptor string) string {
	return strings.TrimSuffix(descriptor, ".vmdk") + "-flat.vmdk"
}

// xorshift is a small deterministic generator for the random regions.
type xorshift uint64

func (x *xorshift) next() uint64 {
	v := uint64(*x)
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	*x = xorshift(v)
	return v * 0x2545F4914F6CDD1D
}

// regionKind picks what a 1 MiB region of a generated disk holds.
type regionKind int

const (
	regionHole regionKind = iota
	regionText
	regionRandom
	regionIsland // a hole with a 4 KiB text island in the middle
)

func fillKind(seed uint64, index, count int64) regionKind {
	switch {
	case index == 0:
		return regionText // the header names the disk
	case index == count-1:
		return regionRandom // data up to the last byte
	}
	x := xorshift(seed ^ uint64(index)*0x9E3779B97F4A7C15 | 1)
	switch x.next() % 6 {
	case 0, 1:
		return regionHole
	case 2:
		return regionText
	case 3:
		return regionIsland
	default:
		return regionRandom
	}
}

// textPage fills buf with lines naming the disk and the page offset, so any
// 4 KiB of a text region tells which disk and where it came from.
func textPage(buf []byte, tag string, offset int64) {
	line := []byte(fmt.Sprintf("ferry-vcsim %s offset %012x\n", tag, offset))
	for i := 0; i < len(buf); i += len(line) {
		copy(buf[i:], line)
	}
}

// fillDisk creates a sparse flat extent of size bytes and writes the
// deterministic contents for tag: 1 MiB regions of holes, text and random
// bytes chosen from seed.
func fillDisk(flatPath string, size int64, tag string, seed uint64) error {
	f, err := os.OpenFile(flatPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, fillRegion)
	count := (size + fillRegion - 1) / fillRegion
	for r := int64(0); r < count; r++ {
		off := r * fillRegion
		n := int64(fillRegion)
		if off+n > size {
			n = size - off
		}
		region := buf[:n]
		switch fillKind(seed, r, count) {
		case regionHole:
			continue
		case regionText:
			for p := int64(0); p < n; p += 4096 {
				end := p + 4096
				if end > n {
					end = n
				}
				textPage(region[p:end], tag, off+p)
			}
		case regionRandom:
			x := xorshift(seed ^ uint64(r+1)*0xD6E8FEB86659FD93 | 1)
			for p := 0; p+8 <= len(region); p += 8 {
				binary.LittleEndian.PutUint64(region[p:], x.next())
			}
		case regionIsland:
			island := int64(300 << 10)
			if island+4096 > n {
				continue
			}
			page := buf[:4096]
			textPage(page, tag, off+island)
			if _, err := f.WriteAt(page, off+island); err != nil {
				return err
			}
			continue
		}
		if _, err := f.WriteAt(region, off); err != nil {
			return err
		}
	}
	// No fsync: a simulator's disks need not survive a crash, and syncing
	// hundreds of MiB per start would dominate the tests.
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// dataRanges lists the [start, end) ranges of f that may hold data, using
// SEEK_DATA/SEEK_HOLE; a file system without them yields one range.
func dataRanges(f *os.File, size int64) [][2]int64 {
	fd := int(f.Fd())
	var out [][2]int64
	off := int64(0)
	for off < size {
		start, err := syscall.Seek(fd, off, seekData)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) {
				break // no data after off
			}
			return [][2]int64{{0, size}}
		}
		if start >= size {
			break
		}
		end, err := syscall.Seek(fd, start, seekHole)
		if err != nil {
			return [][2]int64{{0, size}}
		}
		if end > size {
			end = size
		}
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out
}

// hashBlocks fingerprints every cbtBlockSize block of a flat file of the
// given capacity. Holes and all-zero blocks get the zero hash, so a block
// that is zero reads the same whether or not it is allocated.
func hashBlocks(flatPath string, capacity int64) ([]blockHash, error) {
	return hashBlockRange(flatPath, capacity, 0, (capacity+cbtBlockSize-1)/cbtBlockSize)
}

// hashBlockRange fingerprints blocks [first, last) only; the returned slice
// still has one entry per block of the disk.
func hashBlockRange(flatPath string, capacity, first, last int64) ([]blockHash, error) {
	f, err := os.Open(flatPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	blocks := (capacity + cbtBlockSize - 1) / cbtBlockSize
	if last > blocks {
		last = blocks
	}
	out := make([]blockHash, blocks)
	buf := make([]byte, cbtBlockSize)
	for _, rg := range dataRanges(f, capacity) {
		b := rg[0] / cbtBlockSize
		if b < first {
			b = first
		}
		for ; b < last && b*cbtBlockSize < rg[1]; b++ {
			if out[b] != (blockHash{}) {
				continue // already hashed through an earlier range
			}
			n, err := f.ReadAt(buf, b*cbtBlockSize)
			if err != nil && err != io.EOF {
				return nil, err
			}
			data := buf[:n]
			if isZero(data) {
				continue
			}
			sum := sha256.Sum256(data)
			copy(out[b][:], sum[:16])
			if out[b] == (blockHash{}) {
				out[b][0] = 1 // keep the zero value for zero blocks
			}
		}
	}
	return out, nil
}

// sparseCopy copies src to dst (created or truncated) without writing
// holes or all-zero chunks, so the copy stays as sparse as the original.
func sparseCopy(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, copyBuf)
	const chunk = cbtBlockSize
	for _, rg := range dataRanges(in, size) {
		for off := rg[0]; off < rg[1]; {
			n := int64(len(buf))
			if off+n > rg[1] {
				n = rg[1] - off
			}
			got, rerr := in.ReadAt(buf[:n], off)
			if rerr != nil && rerr != io.EOF {
				out.Close()
				return rerr
			}
			for p := 0; p < got; p += chunk {
				end := p + chunk
				if end > got {
					end = got
				}
				if isZero(buf[p:end]) {
					continue
				}
				if _, err := out.WriteAt(buf[p:end], off+int64(p)); err != nil {
					out.Close()
					return err
				}
			}
			if got == 0 {
				break
			}
			off += int64(got)
		}
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeDescriptor writes a descriptor file next to its flat extent.
func writeDescriptor(descPath string, d descriptorInfo) error {
	return writeFileAtomic(descPath, []byte(descriptorText(d)))
}

// extentOfDescriptor returns the local flat path named by a descriptor's
// first extent line, or "" when it has none.
func extentOfDescriptor(descPath string) string {
	data, err := os.ReadFile(descPath)
	if err != nil {
		return ""
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if !strings.HasPrefix(s, "RW ") && !strings.HasPrefix(s, "RDONLY ") {
			continue
		}
		q1 := strings.IndexByte(s, '"')
		q2 := strings.LastIndexByte(s, '"')
		if q1 >= 0 && q2 > q1 {
			return path.Join(path.Dir(descPath), s[q1+1:q2])
		}
	}
	return ""
}
