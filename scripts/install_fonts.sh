#!/usr/bin/env bash
# Install the fonts and word lists of the synthetic data sets (tf-crnn generate text) into data/fonts/,
# which git ignores: fonts are never committed.
#
#   scripts/install_fonts.sh [DEST]            # DEST defaults to data/fonts under the repository
#   scripts/install_fonts.sh --no-apt [DEST]   # only the npm fonts (no root, or Debian packages already there)
#
# What lands where:
#   DEST/fraktur/  Blankenburg_UNZ1A.ttf (Debian fonts-blankenburg), UnifrakturMaguntia.ttf and
#                  UnifrakturCook.ttf (npm @fontsource/unifrakturmaguntia, @fontsource/unifrakturcook,
#                  WOFF converted to TrueType with fontTools), with their licence notes
#   DEST/latin/    the .ttf / .otf files of Debian's DejaVu, Liberation, FreeFont, URW base35 (without its
#                  symbol and dingbat fonts), Lato, Open Sans, Cantarell, Linux Libertine / Biolinum,
#                  Roboto, Carlito and Caladea packages
#   /usr/share/dict/ngerman, ogerman, american-english   word lists (Debian wngerman, wogerman, wamerican)
#
# The fontsource packages are pinned to 4.5.10: their 5.x releases ship only the "latin" subset of the
# fonts (U+0000-00FF and a few more), without ſ (U+017F) and ꝛ (U+A75B); 4.5.10 also ships the whole font
# ("-all-" files). Needs: apt-get (as root, or sudo) unless --no-apt, npm, and a Python with fontTools
# (the project's virtual environment has it: matplotlib depends on it).
set -euo pipefail

use_apt=1
if [ "${1:-}" = "--no-apt" ]; then
    use_apt=0
    shift
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$repo/data/fonts}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

debian_fonts=(fonts-blankenburg fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf
              fonts-urw-base35 fonts-lato fonts-open-sans fonts-cantarell fonts-linuxlibertine
              fonts-roboto-unhinted fonts-crosextra-carlito fonts-crosextra-caladea)
word_lists=(wngerman wogerman wamerican)
latin_packages=("${debian_fonts[@]:1}")
# Symbol and dingbat fonts map letters to other glyphs (a -> alpha): they would draw wrong labels.
not_latin='^(StandardSymbolsPS|D050000L|DejaVuMathTeXGyre)\.'

if [ "$use_apt" = 1 ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    echo "apt-get install ${debian_fonts[*]} ${word_lists[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${debian_fonts[@]}" "${word_lists[@]}" >/dev/null
fi

mkdir -p "$dest/fraktur" "$dest/latin"

# Fraktur: Debian's Blankenburg
blankenburg="$(dpkg -L fonts-blankenburg 2>/dev/null | grep -E '\.ttf$' | head -n 1 || true)"
if [ -n "$blankenburg" ]; then
    cp -f "$blankenburg" "$dest/fraktur/"
    cp -f /usr/share/doc/fonts-blankenburg/copyright "$dest/fraktur/Blankenburg.copyright" 2>/dev/null || true
else
    echo "fonts-blankenburg is not installed: no Blankenburg in $dest/fraktur" >&2
fi

# Fraktur: UnifrakturMaguntia and UnifrakturCook from npm (WOFF -> TrueType)
npm_dir="$(mktemp -d)"
trap 'rm -rf "$npm_dir"' EXIT
echo "npm install @fontsource/unifrakturmaguntia@4.5.10 @fontsource/unifrakturcook@4.5.10"
npm install --prefix "$npm_dir" --no-save --no-audit --no-fund --loglevel=error \
    @fontsource/unifrakturmaguntia@4.5.10 @fontsource/unifrakturcook@4.5.10 >/dev/null
for pair in unifrakturmaguntia:UnifrakturMaguntia unifrakturcook:UnifrakturCook; do
    package="${pair%%:*}"
    name="${pair##*:}"
    woff="$(ls "$npm_dir/node_modules/@fontsource/$package/files/$package"-all-*.woff)"
    "$python" - "$woff" "$dest/fraktur/$name.ttf" <<'EOF'
import sys
from fontTools.ttLib import TTFont

font = TTFont(sys.argv[1])
font.flavor = None  # WOFF -> plain TrueType (sfnt), readable by any FreeType
font.save(sys.argv[2])
EOF
    # 4.5.10 has no LICENSE file: the font's licence (SIL OFL 1.1) is in its metadata and its name table
    for doc in LICENSE metadata.json; do
        if [ -f "$npm_dir/node_modules/@fontsource/$package/$doc" ]; then
            cp -f "$npm_dir/node_modules/@fontsource/$package/$doc" "$dest/fraktur/$name.$doc"
        fi
    done
done

# Latin fonts for scene-text-like words
for package in "${latin_packages[@]}"; do
    dpkg -L "$package" 2>/dev/null | grep -E '\.(ttf|otf)$' | while read -r file; do
        if ! basename "$file" | grep -qE "$not_latin"; then
            cp -f "$file" "$dest/latin/"
        fi
    done || true  # a package that is not installed has no files
done

echo "fonts in $dest/fraktur: $(ls "$dest/fraktur" | grep -cE '\.(ttf|otf)$'), in $dest/latin: $(ls "$dest/latin" | grep -cE '\.(ttf|otf)$')"
for list in ngerman ogerman american-english; do
    if [ -f "/usr/share/dict/$list" ]; then echo "word list /usr/share/dict/$list: $(wc -l < "/usr/share/dict/$list") words"; fi
done
echo "check them: tf-crnn fonts check $dest/fraktur --alphabet data/alphabets/fraktur.json --csv data/prepared/fraktur.train.csv"
