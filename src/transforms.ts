import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AppError } from './core/errors.js';
import type { Transform, TransformLoader } from './core/transform.js';

/**
 * Transforms are ES modules, loaded once per process. A module that cannot be loaded, or whose default export is not
 * a function, is a configuration error.
 */
export function transformLoader(): TransformLoader {
  const loaded = new Map<string, Promise<Transform>>();
  return (path) => {
    let fn = loaded.get(path);
    if (!fn) {
      fn = import(pathToFileURL(resolve(path)).href).then(
        (mod: { default?: unknown }) => {
          if (typeof mod.default !== 'function') throw new AppError('CONFIG_INVALID', `transform ${path} has no default export that is a function`);
          return mod.default as Transform;
        },
        (err: unknown) => {
          throw new AppError('CONFIG_INVALID', `transform ${path} cannot be loaded: ${(err as Error).message}`, { cause: err });
        },
      );
      loaded.set(path, fn);
    }
    return fn;
  };
}
