# fastdet: `make lesson` runs the lesson notebooks, `make test` runs the tests.
# Both set everything up first (scripts/setup.sh, idempotent: a second run takes seconds).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
WITH_ENV := source scripts/env.sh &&
# Notebooks run on the bundled sample unless FASTDET_DATA says otherwise.
export FASTDET_DATA ?= $(CURDIR)/data/coco128-voc
VOC_URL ?= http://host.robots.ox.ac.uk/pascal/VOC/voc2007

.PHONY: ssd-synthetic setup build gpu-bundle test-bundle lesson test lint test-rust test-notebooks bench-aug bench-train bench-post bench-kernel bench-live bench-anchors lab data-voc clean

setup:
	@bash scripts/setup.sh

## `make build`: against the venv's torch 2.13. `make build TORCH=existing`: against the torch
## the `python3` on PATH imports (2.11, 2.12 or 2.13, with the matching tch: 0.24, 0.25, 0.26);
## TORCH=2.11 (or 2.12) installs that torch from PyPI into the per-user cache first. Those
## builds go to build/torch-<version>/ (scripts/torch_build.sh).
TORCH ?=
build: setup
ifeq ($(TORCH),)
	@$(WITH_ENV) cargo build --release
else
	@bash scripts/torch_build.sh $(TORCH)
endif

## dist/fastdet-gpu/ (<= 60 MiB): fastdet built against torch 2.11 from PyPI, the sample and
## run-checks.sh, for a GPU machine with torch 2.11 and no Rust (scripts/gpu_bundle.sh).
gpu-bundle: setup
	@bash scripts/gpu_bundle.sh

## The bundle's check run here on the CPU (GPU-only steps skipped with a message); log in
## out/bundle-check/run-checks.log.
test-bundle: gpu-bundle
	@PYTHON=$$(bash scripts/torch_build.sh --python 2.11) bash dist/fastdet-gpu/run-checks.sh out/bundle-check

## The main job: execute every notebook on the bundled sample; executed .ipynb + .html in out/.
## The notebooks' shape models and notebook 06's trained detector use the synthetic SSD shipped in
## assets/models/ (`make ssd-synthetic` retrains it): nothing trains before the first notebook.
## Notebooks already executed from the same sources are not run again (FORCE=1 runs them all).
lesson: setup
	@$(WITH_ENV) python scripts/run_notebooks.py notebooks --out out $(if $(FORCE),--force)

## The notebooks run first: they warm the kernels' compile folders the kernel tests then use.
PYTESTS := tests/test_notebooks.py tests/test_proxy.py tests/test_kernel.py tests/test_browser.py

## Style first (seconds once compiled), then the crate's tests (one integration-test binary,
## tests/it/), then the notebooks (shared with `make lesson` through out/) and the kernel.
## The GPU bundle's check is `make test-bundle` (it builds fastdet a second time, against torch 2.11).
test: setup lint
	@bash scripts/test_deps.sh
	@$(WITH_ENV) FASTDET_REQUIRE_REFERENCES=1 cargo test
	@$(WITH_ENV) python -m pytest $(PYTESTS) -q -s

lint: setup
	@cargo fmt --check || { echo "cargo fmt --check: the code is not formatted; run cargo fmt"; exit 1; }
	@$(WITH_ENV) cargo clippy --quiet --all-targets -- -D warnings

test-rust: setup
	@bash scripts/test_deps.sh
	@$(WITH_ENV) FASTDET_REQUIRE_REFERENCES=1 cargo test

test-notebooks: setup
	@bash scripts/test_deps.sh
	@$(WITH_ENV) python -m pytest $(PYTESTS) -q -s

## Augmentation throughput with boxes: fastdet (1 thread, all threads) next to albumentations
## and torchvision (1 thread), plus the box-agreement check against albumentations; a table.
## Then the loader end to end: fastdet's DataLoader next to PyTorch's with albumentations.
bench-aug: setup
	@$(WITH_ENV) python benches/aug_peers.py
	@$(WITH_ENV) python benches/loader_peer.py

## One training step (forward, backward, Adam) of ResNet34 + the detection head, batch 8 at
## 224, fastdet (cargo bench --bench train) next to PyTorch on the same weights, batch and threads.
bench-train: setup
	@$(WITH_ENV) python benches/train_peer.py

## Post-processing: fastdet's NMS next to torchvision.ops.nms / batched_nms (1k-20k random boxes
## and the lesson's show_nmf), and its mAP next to pycocotools and faster-coco-eval (2,000
## synthetic images), single thread, identical results checked; a table with ratios.
bench-post: setup
	@$(WITH_ENV) python benches/post_peers.py

## How long a user waits in the kernel: the first cells of a warm kernel, the next two cells after
## a one-line change in src/, two kernels at once and a kernel compiled from nothing; a table.
bench-kernel: setup
	@$(WITH_ENV) python benches/kernel.py

## What a fit's live output costs: the same fit of the sample with and without it, alternating, in
## one kernel; a table and a verdict against the goal (at most 2% of the fit's time).
bench-live: setup
	@$(WITH_ENV) python benches/live_cost.py

## The synthetic SSD retrained from its seed (CPU, ~15 minutes on 2 cores): the weights go to the
## per-user cache and, in fp16, to assets/models/ssd_synthetic.safetensors, which git then shows
## unchanged when the retraining reproduced the shipped file bit for bit. Prints the VOC07 mAP.
ssd-synthetic: setup
	@$(WITH_ENV) cargo run --release --example ssd_synthetic -- --ship assets/models/ssd_synthetic.safetensors

## The lesson's anchors against anchors fitted to the boxes (k-means with 1 - IoU, genetic
## refinement) on the synthetic shapes: their coverage, then the synthetic SSD trained once with
## each (same seed and epochs: 5 of 1,200 images), and a two-row table of VOC07 mAP (docs/anchors.md).
bench-anchors: setup
	@$(WITH_ENV) cargo run --release --example anchors_synthetic

## Jupyter Lab on notebooks/ (LAB_DIR) with the "Rust (fastdet)" kernel, on
## http://127.0.0.1:$(LAB_PORT) (LAB_PORT=8888 by default); as root it passes --allow-root, and it
## opens a browser only where there is a display.
LAB_PORT ?= 8888
LAB_DIR ?= notebooks
lab: setup
	@echo "Jupyter Lab on $(LAB_DIR)/: open the http://127.0.0.1:$(LAB_PORT)/lab?token=... address printed below"
	@$(WITH_ENV) exec jupyter lab --notebook-dir=$(LAB_DIR) --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.port_retries=0 \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) $$([ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ] || echo --no-browser)

## The full Pascal VOC 2007 into data/pascal (needs internet), with the lesson's JSON files
## written from the XML by fastdet itself.
data-voc: setup
	@mkdir -p data/pascal
	@cd data/pascal && for t in VOCtrainval_06-Nov-2007.tar VOCtest_06-Nov-2007.tar; do \
	  if [ ! -f "$$t" ]; then curl -fL --retry 3 -o "$$t.part" "$(VOC_URL)/$$t" && mv "$$t.part" "$$t"; fi; \
	  tar -xf "$$t"; done
	@$(WITH_ENV) for s in train val test; do \
	  cargo run --release --quiet -- voc2json data/pascal/VOCdevkit/VOC2007 $$s data/pascal/pascal_$${s}2007.json; done
	@echo "VOC2007 is in data/pascal; notebooks use it when FASTDET_DATA=$$(pwd)/data/pascal (or by default once it exists)"

clean:
	rm -rf out target
