"""The development stack (local OpenFaaS emulator, local stack launcher, demo, CLI glue,
test network): never imported by production code."""
