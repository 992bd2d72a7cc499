#!/usr/bin/env bash
# Trains cnn_jax on a Cloud TPU VM pod slice: ships this checkout to every
# worker, installs it there, and runs the same training command on all of them.
#
# Usage:
#   launch/tpu_pod.sh --name=NAME --zone=ZONE --config=FILE --bucket=BUCKET --workdir=RUN
#                     [--data_dir=tensorflow_datasets] [--create
#                     --accelerator=v4-32 --version=tpu-ubuntu2204-base]
#                     [--delete_after] [--dry_run] [-- CNN_JAX_MAIN_FLAGS...]
#
#   --name=NAME        TPU VM name (required)
#   --zone=ZONE        its zone, e.g. us-central2-b (required)
#   --config=FILE      config file relative to the repository root, e.g.
#                      configs/imagenet_resnet50.py (required)
#   --bucket=BUCKET    Cloud Storage bucket, mounted with gcsfuse at ~/bucket on
#                      every worker (required): the workers share the run folder,
#                      and plain file access serves checkpoints, logs and Grain's
#                      ArrayRecord reader alike (it cannot open gs:// paths)
#   --workdir=PATH     run folder inside the bucket, e.g. runs/r50 (required)
#   --data_dir=PATH    TFDS data dir inside the bucket, passed as
#                      --config.data_dir (default: the config's)
#   --create           create the TPU VM first; without it, an existing one is used
#   --accelerator=TYPE accelerator type for --create (default v4-32)
#   --version=RUNTIME  TPU VM runtime for --create (default tpu-ubuntu2204-base)
#   --delete_after     delete the TPU VM when this script exits, also after a failure
#   --dry_run          only print the commands (prefixed "+ "); needs no gcloud
#   -h, --help         print this text
#   -- FLAGS...        passed on to python -m cnn_jax.main, e.g. --config.num_epochs=1
#
# gcloud's default project is used (gcloud config set project PROJECT).
# What is shipped is the committed revision HEAD (git archive): commit first.
# No coordinator flags are needed: on a TPU pod jax.distributed.initialize()
# finds the other workers by itself. Training runs in the foreground over ssh
# (keep the terminal open, or use tmux); re-running the same command resumes
# from the workdir's newest checkpoint.
#
# Example:
#   launch/tpu_pod.sh --create --name=r50 --zone=us-central2-b --accelerator=v4-32 \
#     --config=configs/imagenet_resnet50.py --bucket=BUCKET --workdir=runs/r50 \
#     --data_dir=tensorflow_datasets -- --config.num_epochs=1
set -euo pipefail

name="" zone="" config="" bucket="" workdir="" data_dir=""
accelerator="v4-32" version="tpu-ubuntu2204-base"
create=0 delete_after=0 dry_run=0
extra=()
# pyproject needs Python >= 3.11 and the Ubuntu 22.04 runtimes ship 3.10, so
# the workers get a uv-managed Python in a virtual environment.
python_version="3.11"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "tpu_pod.sh: $*" >&2; exit 2; }

while (( $# )); do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --accelerator=*) accelerator="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --bucket=*) bucket="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --data_dir=*) data_dir="${1#*=}" ;;
    --create) create=1 ;;
    --delete_after) delete_after=1 ;;
    --dry_run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
for required in name zone config bucket workdir; do
  [[ -n "${!required}" ]] || die "--$required is required (see --help)"
done
[[ "$bucket" != gs://* && "$workdir" != gs://* && "$data_dir" != gs://* ]] ||
  die "give --bucket as a name and --workdir/--data_dir as paths inside it (no gs://)"

# Quotes only the words that need it, so that printed commands stay readable
# and the remote command survives the worker's shell unchanged.
quote() {
  local word out=()
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=("$word")
    else out+=("'${word//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}
# Prints a command like `set -x` does and runs it, unless --dry_run.
run() {
  echo "+ $(quote "$@")"
  if (( ! dry_run )); then "$@"; fi
}

cd "$(dirname "$0")/.."  # the repository root: git archive and --config are relative to it
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  echo "tpu_pod.sh: warning: uncommitted changes are not shipped (git archive HEAD)" >&2
fi

tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
if (( create )); then
  run "${tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator" \
    --version="$version"
fi
if (( delete_after )); then
  # On EXIT, so that a failed run does not leave a pod running (and billing).
  trap 'run "${tpu[@]}" delete "$name" "${where[@]}" --quiet' EXIT
fi

# Ship the committed code to the home folder of every worker and install it
# with the TPU build of JAX, and mount the bucket.
tarball="${TMPDIR:-/tmp}/cnn_jax-$name.tar.gz"
run git archive --format=tar.gz --output="$tarball" HEAD
run "${tpu[@]}" scp "$tarball" "$name:cnn_jax.tar.gz" "${where[@]}" --worker=all
install="set -e; rm -rf cnn_jax; mkdir cnn_jax; tar -xzf cnn_jax.tar.gz -C cnn_jax
python3 -m pip install --user --quiet uv
python3 -m uv venv --quiet --allow-existing --python $python_version cnn_jax_venv
python3 -m uv pip install --quiet --python cnn_jax_venv/bin/python -U \"jax[tpu]\"
python3 -m uv pip install --quiet --python cnn_jax_venv/bin/python -e ./cnn_jax
if ! command -v gcsfuse >/dev/null; then
  echo \"deb https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" |
    sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
    sudo tee /etc/apt/trusted.gpg.d/gcsfuse.asc >/dev/null
  sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse
fi
mkdir -p ~/bucket
mountpoint -q ~/bucket || gcsfuse --implicit-dirs $bucket ~/bucket"
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$install"

# The same command on every worker, at once; each becomes one JAX process.
# Paths relative to ~/cnn_jax, where the command runs.
flags=(--config="$config" --workdir="../bucket/$workdir")
if [[ -n "$data_dir" ]]; then flags+=(--config.data_dir="../bucket/$data_dir"); fi
train="cd cnn_jax && ../cnn_jax_venv/bin/python -m cnn_jax.main $(quote "${flags[@]}" "${extra[@]}")"
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$train"
