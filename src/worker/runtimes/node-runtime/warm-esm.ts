// Imported once while a runtime process boots, so that importing the handler
// (an ES module) finds the ESM loader's file path already compiled.
export const warmedUp = true;
