# ainode: `make run` sets up a fresh machine and runs the node with a local Orthanc as its
# PACS; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := orthanc orthanc-dicomweb dcmtk
TEST_APT_PACKAGES := postgresql chromium prometheus

.PHONY: run setup system-packages test-packages venv orthanc serve test ohif

run: setup orthanc serve

setup: system-packages venv

system-packages:
	@if ! command -v Orthanc >/dev/null || ! command -v storescu >/dev/null \
	   || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $(APT_PACKAGES); \
	fi

venv: $(BIN)/ainode

$(BIN)/ainode: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,train,byom]'
	touch $@

# The local PACS: Orthanc on 127.0.0.1:4242 (DICOM) and http://127.0.0.1:8042 (web UI).
orthanc:
	@mkdir -p var/orthanc
	@if ! curl -fs http://127.0.0.1:8042/system >/dev/null 2>&1; then \
	  (cd . && nohup Orthanc orthanc/orthanc.json > var/orthanc/orthanc.log 2>&1 &) ; \
	  for i in $$(seq 1 30); do curl -fs http://127.0.0.1:8042/system >/dev/null 2>&1 && break; sleep 1; done; \
	fi
	@echo "Orthanc (the PACS): DICOM ORTHANC@127.0.0.1:4242, forwarding CT/MR/CR/DX series to AINODE@127.0.0.1:11112"
	@echo "  viewer: http://127.0.0.1:8042/app/explorer.html"

serve:
	@echo "ainode: DICOM AINODE@127.0.0.1:11112"
	@echo "  status:  http://127.0.0.1:8080/  (queues, jobs, results pages)"
	@echo "  API:     http://127.0.0.1:8080/docs"
	@echo "  metrics: http://127.0.0.1:8080/metrics"
	@echo "  try (second shell): .venv/bin/ainode phantom head-ct --out /tmp/head --seed 3 --hematoma"
	@echo "                      .venv/bin/ainode send /tmp/head --port 4242 --aet ORTHANC"
	@echo "  then open http://127.0.0.1:8042/app/explorer.html (patient HEADCT-3)"
	$(BIN)/ainode serve

# The tests also start a real PostgreSQL (scale-out), Chromium (pages) and Prometheus.
test-packages:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v chromium >/dev/null \
	   || ! command -v prometheus >/dev/null; then \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $(TEST_APT_PACKAGES); \
	fi

# OHIF v3 for the viewer tests (tests/test_viewer_ohif.py), fetched once from npm, pinned by
# version and by the tarball's SHA-256: var/ohif-$(OHIF_VERSION)/dist is the built viewer.
OHIF_VERSION := 3.13.2
OHIF_SHA256 := b189d3963bfc58e9394a9db8c7be75d07beb029ec211dbb126d47b62969dd3f1
OHIF_DIR := var/ohif-$(OHIF_VERSION)

ohif: $(OHIF_DIR)/dist/index.html

$(OHIF_DIR)/dist/index.html:
	@command -v npm >/dev/null || { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y npm; }
	rm -rf $(OHIF_DIR).part && mkdir -p $(OHIF_DIR).part
	cd $(OHIF_DIR).part && npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null
	echo "$(OHIF_SHA256)  $(OHIF_DIR).part/ohif-app-$(OHIF_VERSION).tgz" | sha256sum -c --quiet -
	tar -xzf $(OHIF_DIR).part/ohif-app-$(OHIF_VERSION).tgz -C $(OHIF_DIR).part package/dist package/LICENSE package/package.json
	rm -rf $(OHIF_DIR) && mv $(OHIF_DIR).part/package $(OHIF_DIR) && rm -rf $(OHIF_DIR).part
	@echo "OHIF $(OHIF_VERSION) in $(OHIF_DIR)/dist"

test: system-packages test-packages venv ohif
	$(BIN)/python -m pytest -q --durations=25
