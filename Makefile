# The two commands of the README. Each does its own set-up when needed.
.PHONY: run test

run:
	scripts/bootstrap
	scripts/run

test:
	scripts/bootstrap --dev
	scripts/test
