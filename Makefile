# Two entry points for a fresh machine: `make report` (main job) and `make test`.
# Both create .venv in the repo and install cnncost into it on first use, with the exact versions the committed
# reports were made with (constraints.txt; pyproject.toml itself only asks for ranges).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: report test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/cnncost report --out reports

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
