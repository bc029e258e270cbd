/**
 * The file that makes a directory (or bucket) a pve-cbt repository, holding its format. A module
 * of its own so that what only checks for a repository (the CLI's `list`, the catalog's sync) does
 * not load the repository's code, its workers and lz4 with it.
 */
export const REPOSITORY_MARKER = '.pve-cbt-repository';
