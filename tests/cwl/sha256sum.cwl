#!/usr/bin/env cwl-runner
# The workflow of tests/tests/cwl_tes.rs: the SHA-256 of one input file, into sha256.txt.
# The input is a drs:// URI; the image is the project's task image (cargo xtask images).
#
# `umask 000`: TESK's filer runs as UID 100 and opens each output read-write (`open(path,
# 'r+b')` in tesk-core's filer.py), so an output the executor (root here) writes with the default
# umask (0644) cannot be uploaded. The output is therefore written by the tool itself, not as
# `stdout` (tesk-api's shell redirect would create that file with the default umask).
cwlVersion: v1.0
class: CommandLineTool
doc: SHA-256 of one input file
requirements:
  DockerRequirement:
    dockerPull: c4gh.local/c4gh-task:dev
  ResourceRequirement:
    coresMin: 1
    ramMin: 64
    outdirMin: 64
    tmpdirMin: 64
baseCommand: [sh, -c, 'umask 000 && sha256sum "$0" > sha256.txt']
inputs:
  reads:
    type: File
    inputBinding:
      position: 1
outputs:
  checksum:
    type: File
    outputBinding:
      glob: sha256.txt
