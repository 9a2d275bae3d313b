# CPack settings: the .deb from the ordinary build (Debian's libraries as dependencies, found by dpkg-shlibdeps) and
# the .rpm from the portable build (ND_PORTABLE: it carries its libraries, so it installs on Amazon Linux 2 and 2023
# without any other repository). `make package` (packaging/make-packages.sh) runs both; docs/packaging.md.
set(CPACK_PACKAGE_NAME nitrodiag)
set(CPACK_PACKAGE_VENDOR "nitrodiag")
set(CPACK_PACKAGE_CONTACT "nitrodiag developers <nitrodiag@users.noreply.github.com>")
set(CPACK_PACKAGE_VERSION "${ND_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Diagnostics for AWS Nitro Enclaves hosts, and a KMS proxy for enclaves")
set(CPACK_PACKAGE_DESCRIPTION "nitrodiag runs runbooks that diagnose a Nitro Enclaves parent instance (allocator, \
driver, nitro-cli errors E26/E27/..., test enclaves, vsock, KMS) and writes a support bundle; nitrodiag-kms-proxy is \
the host-side KMS proxy for enclaves.")
set(CPACK_PACKAGE_DESCRIPTION_FILE "${PROJECT_SOURCE_DIR}/packaging/description.txt")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES OFF)
set(CPACK_PACKAGE_CHECKSUM SHA256)

# ---- .deb ----
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libcurl and libarchive are loaded with dlopen on first use (core/lazylib.c), so dpkg-shlibdeps cannot see them:
# named here (the t64 names are Ubuntu 24.04's), added to what shlibdeps finds.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libarchive13 | libarchive13t64, libcurl4 | libcurl4t64")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "bash-completion, man-db")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "aws-nitro-enclaves-cli, docker.io")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${PROJECT_SOURCE_DIR}/packaging/deb/conffiles;${PROJECT_SOURCE_DIR}/packaging/deb/postinst;${PROJECT_SOURCE_DIR}/packaging/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# ---- .rpm ----
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE 1)
set(CPACK_RPM_PACKAGE_LICENSE "Unspecified")
set(CPACK_RPM_PACKAGE_GROUP "Applications/System")
set(CPACK_RPM_PACKAGE_ARCHITECTURE ${CMAKE_SYSTEM_PROCESSOR})
# The tree carries its own libraries: no automatic Requires on glibc symbol versions (which Amazon Linux 2's glibc
# 2.26 could not satisfy) and no automatic Provides that would offer its private libc to other packages.
set(CPACK_RPM_PACKAGE_AUTOREQPROV OFF)
set(CPACK_RPM_PACKAGE_REQUIRES "")
# Amazon Linux 2's rpm 4.11 reads xz payloads, not zstd.
set(CPACK_RPM_COMPRESSION_TYPE xz)
# No stripping or build-id links: /usr/lib/.build-id entries for the carried libc would collide with the host's
# glibc package.
set(CPACK_RPM_SPEC_MORE_DEFINE "%define __os_install_post %{nil}
%define _build_id_links none
%define debug_package %{nil}")
set(CPACK_RPM_USER_FILELIST "%config(noreplace) /etc/nitrodiag/kms-proxy.conf")
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION /etc /usr/lib/systemd /usr/lib/systemd/system /usr/libexec
    /usr/share/man /usr/share/man/man1 /usr/share/bash-completion /usr/share/bash-completion/completions
    /usr/share/doc)
set(CPACK_RPM_POST_INSTALL_SCRIPT_FILE "${PROJECT_SOURCE_DIR}/packaging/rpm/post")
set(CPACK_RPM_POST_UNINSTALL_SCRIPT_FILE "${PROJECT_SOURCE_DIR}/packaging/rpm/postun")

if(ND_PORTABLE)
  set(CPACK_GENERATOR RPM)
else()
  set(CPACK_GENERATOR DEB)
endif()
include(CPack)
