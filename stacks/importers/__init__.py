"""Importers of the seeds' inventories into a site's stack file (`python -m stacks
import-inventory`): the ConvectHub Ansible INI inventory and OpenPAI's master.csv, worker.csv and
config. Each importer gives an `ImportResult`; `stack_document` writes it out, `cli` runs it."""
