import type { NextFunction, Request, Response } from 'express';

/**
 * Security headers. The dashboard needs its own scripts, styles, web worker and API; Bull Board's page and UI use
 * inline styles (style attributes, <style> elements added at run time), hence 'unsafe-inline' for styles only.
 * Google Fonts, which the page asks for, is not allowed: the UI falls back to local fonts.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Health, readiness and metrics are data, never pages: nothing may load from or frame them. */
export const DATA_CSP = "default-src 'none'; frame-ancestors 'none'";

export function securityHeaderValues(csp: string): Record<string, string> {
  return {
    'Content-Security-Policy': csp,
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    // Not no-referrer: with it, browsers send `Origin: null` on the dashboard's own requests, which the
    // same-origin check would refuse.
    'Referrer-Policy': 'same-origin',
  };
}

export function securityHeaders(csp: string) {
  const values = securityHeaderValues(csp);
  return (_req: Request, res: Response, next: NextFunction): void => {
    res.set(values);
    next();
  };
}
