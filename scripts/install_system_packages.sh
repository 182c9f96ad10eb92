#!/usr/bin/env bash
# System (Debian) packages the tests use, installed when missing:
#   dicom3tools       dciodvfy, the DICOM validator the DICOM SEG/SR tests run
#   orthanc           the PACS the DICOMweb round-trip test starts on a loopback port
#   orthanc-dicomweb  its DICOMweb plugin
# Needs root (or sudo) the first time only; a machine that has them already is left alone.
set -euo pipefail
missing=()
command -v dciodvfy >/dev/null || missing+=(dicom3tools)
command -v Orthanc >/dev/null || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
[ ${#missing[@]} -eq 0 ] && exit 0
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
echo "installing ${missing[*]} (Debian packages the tests use)"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
