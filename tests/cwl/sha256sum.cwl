#!/usr/bin/env cwl-runner
# The workflow of tests/tests/cwl_tes.rs: the SHA-256 of one input file, into the tool's stdout.
# The input is a drs:// URI; the image is the project's task image (cargo xtask images).
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
baseCommand: [sha256sum]
inputs:
  reads:
    type: File
    inputBinding:
      position: 1
stdout: sha256.txt
outputs:
  checksum:
    type: stdout
