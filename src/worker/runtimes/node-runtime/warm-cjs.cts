// Imported once while a runtime process boots, so that importing a CommonJS
// handler finds the CommonJS-from-ESM path (and its export lexer) ready.
export const warmedUp = true;
