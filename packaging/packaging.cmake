# Install rules and the .deb/.rpm packages (CPack): ferry-agent (with ferry)
# and ferry-repo. scripts/package builds them; docs/PACKAGING.md says what
# goes where. Included from the top-level CMakeLists.txt (not in fuzz
# builds).
#
#   FERRY_PACKAGE_FORMAT      deb or rpm: the paths and files that differ
#   FERRY_PACKAGE_LICENSE     the license name the packages declare

set(FERRY_PACKAGE_FORMAT deb CACHE STRING "deb or rpm: paths and files that differ")
set_property(CACHE FERRY_PACKAGE_FORMAT PROPERTY STRINGS deb rpm)
# LICENSE at the top of the tree; packaging/copyright says the same.
set(FERRY_PACKAGE_LICENSE "Apache-2.0" CACHE STRING
  "license name for the packages' metadata")
set(FERRY_PACKAGE_MAINTAINER "Ferry developers <ferry@ferry-backup.invalid>" CACHE STRING
  "package maintainer")

if(FERRY_PACKAGE_FORMAT STREQUAL "rpm")
  # Fedora/RHEL: units and udev rules under /usr/lib.
  set(FERRY_UNIT_DIR /usr/lib/systemd/system)
  set(FERRY_UDEV_DIR /usr/lib/udev/rules.d)
else()
  # Debian 12: /lib (merged /usr, but lintian and dh still use /lib).
  set(FERRY_UNIT_DIR /lib/systemd/system)
  set(FERRY_UDEV_DIR /lib/udev/rules.d)
endif()

set(FERRY_PKG_DIR ${CMAKE_CURRENT_LIST_DIR})
set(FERRY_PKG_GEN ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${FERRY_PKG_GEN})

# Man pages and the Debian changelog, compressed as Debian wants (gzip -9n:
# no name, no time stamp, so the packages are reproducible).
find_program(FERRY_GZIP gzip REQUIRED)
function(ferry_gzip in out)
  add_custom_command(OUTPUT ${out}
    COMMAND ${FERRY_GZIP} -9nc ${in} > ${out}
    DEPENDS ${in} VERBATIM)
endfunction()
set(FERRY_PKG_OUTPUTS)
foreach(page ferry-agent.1 ferry.1 ferry-repo.1)
  ferry_gzip(${FERRY_PKG_DIR}/man/${page} ${FERRY_PKG_GEN}/${page}.gz)
  list(APPEND FERRY_PKG_OUTPUTS ${FERRY_PKG_GEN}/${page}.gz)
endforeach()
configure_file(${FERRY_PKG_DIR}/debian/changelog.in ${FERRY_PKG_GEN}/changelog @ONLY)
ferry_gzip(${FERRY_PKG_GEN}/changelog ${FERRY_PKG_GEN}/changelog.Debian.gz)
list(APPEND FERRY_PKG_OUTPUTS ${FERRY_PKG_GEN}/changelog.Debian.gz)
add_custom_target(ferry-package-files ALL DEPENDS ${FERRY_PKG_OUTPUTS})

# ---- ferry-agent: ferry-agent, ferry, the udev guard, the unit, the config
install(TARGETS ferry-agent ferry RUNTIME DESTINATION bin COMPONENT agent)
install(FILES ${FERRY_PKG_DIR}/60-ferry-hotadd.rules
  DESTINATION ${FERRY_UDEV_DIR} COMPONENT agent)
install(FILES ${FERRY_PKG_DIR}/ferry-agent.service
  DESTINATION ${FERRY_UNIT_DIR} COMPONENT agent)
install(FILES ${FERRY_PKG_DIR}/agent.conf DESTINATION /etc/ferry COMPONENT agent)
install(FILES ${FERRY_PKG_GEN}/ferry-agent.1.gz ${FERRY_PKG_GEN}/ferry.1.gz
  DESTINATION share/man/man1 COMPONENT agent)

# ---- ferry-repo: ferry-repo, its unit, its settings --------------------------
install(TARGETS ferry-repo RUNTIME DESTINATION bin COMPONENT repo)
install(FILES ${FERRY_PKG_DIR}/ferry-repo.service
  DESTINATION ${FERRY_UNIT_DIR} COMPONENT repo)
install(FILES ${FERRY_PKG_DIR}/repo.conf DESTINATION /etc/ferry COMPONENT repo)
install(FILES ${FERRY_PKG_GEN}/ferry-repo.1.gz
  DESTINATION share/man/man1 COMPONENT repo)

foreach(comp agent repo)
  set(doc share/doc/ferry-${comp})
  install(FILES ${FERRY_PKG_DIR}/copyright ${CMAKE_SOURCE_DIR}/docs/PACKAGING.md
    DESTINATION ${doc} COMPONENT ${comp})
  if(FERRY_PACKAGE_FORMAT STREQUAL "deb")
    install(FILES ${FERRY_PKG_GEN}/changelog.Debian.gz DESTINATION ${doc}
      COMPONENT ${comp})
    install(FILES ${FERRY_PKG_DIR}/debian/ferry-${comp}.lintian-overrides
      DESTINATION share/lintian/overrides RENAME ferry-${comp}
      COMPONENT ${comp})
  endif()
endforeach()

# ---- CPack -------------------------------------------------------------------
set(CPACK_PACKAGE_NAME ferry)
set(CPACK_PACKAGE_VENDOR "The Ferry developers")
set(CPACK_PACKAGE_CONTACT "${FERRY_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPack would put it before each
# package's own synopsis (the first line of its description).
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL agent repo)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_COMPONENT_AGENT_DISPLAY_NAME ferry-agent)
set(CPACK_COMPONENT_REPO_DISPLAY_NAME ferry-repo)

# One paragraph per package, lines below 80 columns (lintian).
set(FERRY_AGENT_DESCRIPTION
"Ferry reads VMware VM disks on a backup proxy (hotadd, NBD, HTTPS, local
files and block devices), cuts them into blocks, skips zeros, deduplicates
by SHA-256, compresses with zstd and sends what the repository lacks over
mutual TLS to ferry-repo.
.
This package holds ferry-agent (one-shot backups, the crash self-cleanup,
the inventory, and the agent service with its control API), ferry (list,
restore, the certificate authority, and the client of the agent service),
the udev rule that keeps LVM, MD and udisks off hot-added disks, and a
hardened systemd unit.")
set(FERRY_REPO_DESCRIPTION
"Ferry reads VMware VM disks on a backup proxy, deduplicates and
compresses them, and sends them over mutual TLS to its repository.
.
This package holds ferry-repo, the repository server: it stores blocks by
content, re-hashes every block it is sent, and can list, verify, prune,
collect garbage and restore. It runs as the system user ferry-repo in a
hardened systemd unit, with its data in /var/lib/ferry/repo.")

# .deb
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${FERRY_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SOURCE ferry)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_AGENT_PACKAGE_NAME ferry-agent)
set(CPACK_DEBIAN_REPO_PACKAGE_NAME ferry-repo)
set(CPACK_DEBIAN_AGENT_DESCRIPTION "backup agent of Ferry, an open-source VMware backup proxy\n${FERRY_AGENT_DESCRIPTION}")
set(CPACK_DEBIAN_REPO_DESCRIPTION "backup repository of Ferry, an open-source VMware backup proxy\n${FERRY_REPO_DESCRIPTION}")
# nbdkit runs VMware's VDDK for the nbd and nbdssl modes (libDir).
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS "nbdkit")
set(CPACK_DEBIAN_REPO_PACKAGE_DEPENDS "adduser")
foreach(comp agent repo)
  string(TOUPPER ${comp} COMP)
  set(extra ${FERRY_PKG_GEN}/deb-${comp})
  file(MAKE_DIRECTORY ${extra})
  foreach(script postinst prerm postrm)
    if(EXISTS ${FERRY_PKG_DIR}/debian/ferry-${comp}.${script})
      file(COPY_FILE ${FERRY_PKG_DIR}/debian/ferry-${comp}.${script} ${extra}/${script})
      list(APPEND CPACK_DEBIAN_${COMP}_PACKAGE_CONTROL_EXTRA ${extra}/${script})
    endif()
  endforeach()
  file(WRITE ${extra}/conffiles "/etc/ferry/${comp}.conf\n")
  list(APPEND CPACK_DEBIAN_${COMP}_PACKAGE_CONTROL_EXTRA ${extra}/conffiles)
endforeach()

# .rpm
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE 1)
set(CPACK_RPM_PACKAGE_LICENSE "${FERRY_PACKAGE_LICENSE}")
set(CPACK_RPM_PACKAGE_GROUP "Applications/System")
set(CPACK_RPM_PACKAGE_URL "")
set(CPACK_RPM_AGENT_PACKAGE_NAME ferry-agent)
set(CPACK_RPM_REPO_PACKAGE_NAME ferry-repo)
set(CPACK_RPM_AGENT_PACKAGE_SUMMARY "Backup agent of Ferry, an open-source VMware backup proxy")
set(CPACK_RPM_REPO_PACKAGE_SUMMARY "Backup repository of Ferry, an open-source VMware backup proxy")
set(CPACK_RPM_AGENT_PACKAGE_DESCRIPTION "${FERRY_AGENT_DESCRIPTION}")
set(CPACK_RPM_REPO_PACKAGE_DESCRIPTION "${FERRY_REPO_DESCRIPTION}")
set(CPACK_RPM_AGENT_USER_FILELIST "%config(noreplace) /etc/ferry/agent.conf")
set(CPACK_RPM_REPO_USER_FILELIST "%config(noreplace) /etc/ferry/repo.conf")
set(CPACK_RPM_REPO_PACKAGE_REQUIRES_PRE "shadow-utils")
set(CPACK_RPM_AGENT_PACKAGE_SUGGESTS "nbdkit")
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
  /etc /etc/ferry /lib /lib/systemd /lib/systemd/system /lib/udev /lib/udev/rules.d
  /usr/lib/systemd /usr/lib/systemd/system /usr/lib/udev /usr/lib/udev/rules.d
  /usr/share/man /usr/share/man/man1)
set(CPACK_RPM_AGENT_POST_INSTALL_SCRIPT_FILE ${FERRY_PKG_DIR}/rpm/ferry-agent.post)
set(CPACK_RPM_AGENT_PRE_UNINSTALL_SCRIPT_FILE ${FERRY_PKG_DIR}/rpm/ferry-agent.preun)
set(CPACK_RPM_AGENT_POST_UNINSTALL_SCRIPT_FILE ${FERRY_PKG_DIR}/rpm/systemd.postun)
set(CPACK_RPM_REPO_PRE_INSTALL_SCRIPT_FILE ${FERRY_PKG_DIR}/rpm/ferry-repo.pre)
set(CPACK_RPM_REPO_POST_INSTALL_SCRIPT_FILE ${FERRY_PKG_DIR}/rpm/ferry-repo.post)
set(CPACK_RPM_REPO_PRE_UNINSTALL_SCRIPT_FILE ${FERRY_PKG_DIR}/rpm/ferry-repo.preun)
set(CPACK_RPM_REPO_POST_UNINSTALL_SCRIPT_FILE ${FERRY_PKG_DIR}/rpm/systemd.postun)
set(CPACK_RPM_CHANGELOG_FILE ${FERRY_PKG_DIR}/rpm/changelog)

set(CPACK_GENERATOR DEB)
include(CPack)
