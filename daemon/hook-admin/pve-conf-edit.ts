/**
 * Pure edits of the two Proxmox config files pve-cbt's installer touches (both `key: value` lines):
 * - `/etc/pve/qemu-server/VMID.conf`: only the current section, i.e. the lines before the first
 *   `[section]` header; snapshot sections (`[snapname]`) and `[PENDING]` keep their own hookscript.
 * - `/etc/vzdump.conf`: the one uncommented `script:` line.
 * Everything else (comments, order, other keys) is left byte for byte as it was.
 */

export function readVmHookscript(text: string): string | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('[')) break;
    const m = /^hookscript:\s*(\S+)\s*$/.exec(line);
    if (m) return m[1];
  }
  return undefined;
}

export function setVmHookscript(text: string, volid: string | undefined): string {
  return setKey(text, 'hookscript', volid, (line) => line.startsWith('['));
}

export function readVzdumpScript(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const m = /^script:\s*(\S.*?)\s*$/.exec(line);
    if (m) return m[1];
  }
  return undefined;
}

export function setVzdumpScript(text: string, scriptPath: string | undefined): string {
  return setKey(text, 'script', scriptPath, () => false);
}

/** Replaces (or removes) the first `key:` line before the section end, or inserts one there. */
function setKey(text: string, key: string, value: string | undefined, isSectionEnd: (line: string) => boolean): string {
  const lines = text.split('\n');
  let end = lines.findIndex(isSectionEnd);
  if (end < 0) end = lines.length;
  const at = lines.slice(0, end).findIndex((l) => l.startsWith(`${key}:`));
  if (at >= 0) {
    if (value === undefined) lines.splice(at, 1);
    else lines[at] = `${key}: ${value}`;
    return lines.join('\n');
  }
  if (value === undefined) return text;
  // Insert after the last non-empty line of the section, keeping a blank line before a header.
  let insertAt = end;
  while (insertAt > 0 && lines[insertAt - 1] === '') insertAt--;
  lines.splice(insertAt, 0, `${key}: ${value}`);
  const out = lines.join('\n');
  return out.endsWith('\n') || out === '' ? out : `${out}\n`;
}
