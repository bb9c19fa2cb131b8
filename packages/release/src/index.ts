export { run, readPending, recordReleases, checkPendingBumps, workspacePackages, findRoot, bumped, classifierFor, type Pending, type Released, type WorkspacePackage, type PackageKind } from './version.js';
export { ledgerEntry, ledgerText, ledgerPath, ledgerDir, ledgerVersions, readLedgerEntry, writeLedgerEntry, previousLedgerEntry, compareVersions, type LedgerEntry } from './ledger.js';
export { guestAbiSection, insertGuestAbi, hexOf, GUEST_ABI_HEADING, type Classifier, type NotesInput } from './notes.js';
export { parseSummary, parseChangesetFile, WAIVER_LINE, type Waiver, type ParsedSummary, type PendingChangeset, type BumpType } from './summary.cjs';
