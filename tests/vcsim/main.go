// ferry-vcsim: govmomi's vCenter/ESXi simulator with the calls a backup
// proxy needs added on top (changed block tracking, DisableMethods,
// consolidation, snapshot disks backed by real data). See docs/VCSIM.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

type config struct {
	listen      string
	datadir     string
	readyFile   string
	certFile    string
	keyFile     string
	esx         bool
	diskSize    int64
	username    string
	password    string
	trace       bool
	guestRoot   string
	guestNoWWID bool
	sanLUNs     map[string]*sanVolume // --san-lun, by datastore
	mkvmfs6     string
	sanThick    map[string]bool // --san-thick: VMs laid out thick
	guestQMP    string
	// With --guest-qmp: the proxy VM's config.uuid and MAC, the guest's.
	proxyBIOSUUID string
	proxyMAC      string
}

// Disks must hold whole 64 KiB change-tracking blocks and stay small enough
// that a test suite writes them quickly.
const (
	minDiskSize     = 1 << 20
	maxDiskSize     = 64 << 30
	defaultDiskSize = 64 << 20
)

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("ferry-vcsim", flag.ContinueOnError)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	fs.StringVar(&cfg.datadir, "datadir", "", "directory for the datastores (required; ds1/ and ds2/ must not exist or be empty)")
	fs.StringVar(&cfg.readyFile, "ready-file", "", "JSON file written once the server listens (required)")
	fs.StringVar(&cfg.certFile, "cert", "", "TLS certificate (PEM); a self-signed one is generated when empty")
	fs.StringVar(&cfg.keyFile, "key", "", "TLS private key (PEM) for --cert")
	fs.BoolVar(&cfg.esx, "esx", false, "simulate a standalone ESXi host instead of vCenter")
	size := fs.String("disk-size", strconv.Itoa(defaultDiskSize), "capacity in bytes of every inventory disk (multiple of 1 MiB)")
	fs.StringVar(&cfg.username, "username", "", "login user name (default administrator@vsphere.local, root with --esx)")
	fs.StringVar(&cfg.password, "password", "ferry-vcsim-pw", "login password")
	fs.BoolVar(&cfg.trace, "trace", false, "log every SOAP request and response to stderr")
	fs.BoolVar(&cfg.guestNoWWID, "guest-no-wwid", false, "with --guest-root: the proxy's disks have no device/wwid (disk.EnableUUID off); found by PCI slot and unit only")
	fs.StringVar(&cfg.guestRoot, "guest-root", "", "emulate the proxy's guest under this directory: hot-added disks appear as loop devices in DIR/sys/block and DIR/dev (needs root; docs/VCSIM.md)")
	fs.Func("san-lun", "DATASTORE=IMAGE[,IMAGE2]: that datastore is VMFS on these LUN images, rebuilt with --mkvmfs6 whenever a snapshot freezes a disk (repeatable; docs/VCSIM.md)", func(v string) error { return parseSanLUN(cfg, v) })
	fs.StringVar(&cfg.mkvmfs6, "mkvmfs6", "", "tests/tools/mkvmfs6, for --san-lun")
	fs.Func("san-thick", "VM whose disks --san-lun volumes hold thick (eager-zeroed) rather than thin (repeatable)", func(v string) error {
		if cfg.sanThick == nil {
			cfg.sanThick = map[string]bool{}
		}
		cfg.sanThick[v] = true
		return nil
	})
	fs.StringVar(&cfg.guestQMP, "guest-qmp", "", "the proxy VM is the QEMU guest behind this QMP socket: its BIOS UUID and MAC, disks hot-plugged into its paravirtual SCSI controller (docs/VCSIM.md)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(cfg.sanLUNs) > 0 && cfg.mkvmfs6 == "" {
		return nil, errors.New("--san-lun needs --mkvmfs6 PATH")
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.guestQMP != "" && cfg.guestRoot != "" {
		return nil, errors.New("--guest-qmp and --guest-root exclude each other")
	}
	if cfg.datadir == "" || cfg.readyFile == "" {
		return nil, errors.New("--datadir and --ready-file are required")
	}
	if (cfg.certFile == "") != (cfg.keyFile == "") {
		return nil, errors.New("--cert and --key go together")
	}
	n, err := strconv.ParseInt(*size, 10, 64)
	if err != nil || n < minDiskSize || n > maxDiskSize || n%(1<<20) != 0 {
		return nil, fmt.Errorf("--disk-size %q: want a multiple of 1 MiB between %d and %d", *size, int64(minDiskSize), int64(maxDiskSize))
	}
	cfg.diskSize = n
	if cfg.username == "" {
		cfg.username = "administrator@vsphere.local"
		if cfg.esx {
			cfg.username = "root"
		}
	}
	return cfg, nil
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("ferry-vcsim: ")
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "ferry-vcsim: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		log.Printf("%v", err)
		os.Exit(1)
	}
}

func run(cfg *config) error {
	simulator.Trace = cfg.trace

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)

	cert, certPath, err := loadOrMakeCert(cfg)
	if err != nil {
		return err
	}

	var qmp *qmpClient
	if cfg.guestQMP != "" {
		if qmp, err = dialQMP(cfg.guestQMP); err != nil {
			return err
		}
		defer qmp.conn.Close()
		uuid, mac, err := qmp.guestIdentity()
		if err != nil {
			return fmt.Errorf("guest: %w", err)
		}
		// vSphere's config.uuid is what Linux prints in product_uuid with
		// the first three fields byte-swapped; QEMU's -uuid is what the
		// guest prints.
		cfg.proxyBIOSUUID, cfg.proxyMAC = swappedUUID(uuid), mac
	}
	h, err := newHarness(cfg, addr)
	if err != nil {
		return err
	}
	if qmp != nil {
		if err := h.startQMPGuest(qmp); err != nil {
			return err
		}
	}
	h.setCertificate(cert, certPath)
	if err := h.setupSAN(); err != nil {
		return err
	}
	if cfg.guestRoot != "" {
		if err := h.startGuest(cfg.guestRoot, cfg.guestNoWWID); err != nil {
			return err
		}
		defer h.guest.close()
	}

	srv := &http.Server{
		Handler:           h.routes(),
		TLSConfig:         tlsConfig(cert),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(os.Stderr, "ferry-vcsim: http: ", log.Ltime),
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()

	if err := writeReadyFile(cfg.readyFile, h.readyInfo()); err != nil {
		return err
	}
	log.Printf("listening on %s (%s), ready file %s", h.sdkURL(), h.apiType(), cfg.readyFile)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sigs:
		log.Printf("%v: shutting down", s)
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}

	// WaitForUpdatesEx long polls would hold Shutdown; give in-flight calls a
	// moment, then close whatever is left.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
	return nil
}
