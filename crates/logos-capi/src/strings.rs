//! Everything raw that crosses the C boundary: string arguments in, owned strings and
//! NULL-terminated lists out, and the application's callback pointer pair.
//!
//! With `lib.rs`, this is the only file with `unsafe`; the rest of the crate sees `&str`,
//! `String`, `Vec<String>` and [`Callback`]. Strings and lists handed to the application are
//! allocated with the C library's `malloc`, so `logos_core_free_string` / `logos_core_free_list`
//! release them and so does plain `free` (per string, then the array): nothing returned needs
//! the C++ runtime or Rust's allocator to be released. Never keeps a pointer it was given beyond
//! the call, except the callback pair, which it only passes back to the application.

use crate::error::Error;
use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// Reads the C string argument `name`.
///
/// # Errors
/// [`Error::Null`] for NULL, [`Error::Utf8`] when it is not UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
pub(crate) unsafe fn arg<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(Error::Null { name });
    }
    // SAFETY: not NULL, and the caller guarantees a NUL-terminated string valid for 'a.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| Error::Utf8 {
        name,
        offset: e.valid_up_to(),
    })
}

/// Copies `s` into a new `malloc`ed C string (cut at an interior NUL, which names, paths and
/// JSON never contain).
///
/// # Errors
/// [`Error::Os`] when `malloc` fails.
pub(crate) fn to_c(s: &str) -> Result<*mut c_char, Error> {
    let bytes = s.split('\0').next().unwrap_or_default().as_bytes();
    // SAFETY: malloc has no preconditions; the result is checked for NULL below.
    let p = unsafe { libc::malloc(bytes.len() + 1) }.cast::<u8>();
    if p.is_null() {
        return Err(out_of_memory(bytes.len() + 1));
    }
    // SAFETY: `p` holds len + 1 bytes, freshly allocated, so it cannot overlap `bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        *p.add(bytes.len()) = 0;
    }
    Ok(p.cast())
}

/// Copies `items` into a new `malloc`ed NULL-terminated array of `malloc`ed C strings.
///
/// # Errors
/// [`Error::Os`] when `malloc` fails (nothing is leaked then).
pub(crate) fn to_c_list(items: &[String]) -> Result<*mut *mut c_char, Error> {
    let bytes = (items.len() + 1) * std::mem::size_of::<*mut c_char>();
    // SAFETY: malloc has no preconditions; the result is checked for NULL below.
    let list = unsafe { libc::malloc(bytes) }.cast::<*mut c_char>();
    if list.is_null() {
        return Err(out_of_memory(bytes));
    }
    for (i, item) in items.iter().enumerate() {
        match to_c(item) {
            // SAFETY: `list` has room for items.len() + 1 pointers and i < items.len().
            Ok(s) => unsafe { *list.add(i) = s },
            Err(e) => {
                // SAFETY: slot i is unwritten; NULL-terminate so free_list stops there.
                unsafe { *list.add(i) = std::ptr::null_mut() };
                // SAFETY: a list built above, NULL-terminated at i.
                unsafe { free_list(list) };
                return Err(e);
            }
        }
    }
    // SAFETY: the last of the items.len() + 1 slots.
    unsafe { *list.add(items.len()) = std::ptr::null_mut() };
    Ok(list)
}

fn out_of_memory(bytes: usize) -> Error {
    Error::Os {
        what: format!("allocating {bytes} bytes for a returned string"),
        source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
    }
}

/// Releases a string from [`to_c`]; NULL is ignored.
///
/// # Safety
/// `s` is NULL or was returned by this library and not released yet.
pub(crate) unsafe fn free_string(s: *mut c_char) {
    // SAFETY: from malloc (to_c), per the caller; free(NULL) does nothing.
    unsafe { libc::free(s.cast()) }
}

/// Releases a list from [`to_c_list`] and every string in it; NULL is ignored.
///
/// # Safety
/// `list` is NULL or was returned by this library and not released yet (its strings neither).
pub(crate) unsafe fn free_list(list: *mut *mut c_char) {
    if list.is_null() {
        return;
    }
    let mut i = 0;
    loop {
        // SAFETY: the list is NULL-terminated, so every slot up to the NULL is readable.
        let s = unsafe { *list.add(i) };
        if s.is_null() {
            break;
        }
        // SAFETY: each entry came from to_c.
        unsafe { free_string(s) };
        i += 1;
    }
    // SAFETY: the array came from malloc in to_c_list.
    unsafe { libc::free(list.cast()) }
}

/// The C signature of `AsyncCallback`.
pub(crate) type CallbackFn = unsafe extern "C" fn(c_int, *const c_char, *mut c_void);

/// An application callback and the `user_data` it was registered with. Only ever invoked from
/// `logos_core_process_events` / `logos_core_exec`, on the thread that calls them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Callback {
    f: CallbackFn,
    user_data: *mut c_void,
}

// SAFETY: the library never dereferences `user_data` and never calls `f` on its own threads: a
// `Callback` only travels from the calling thread through the delivery queue to the thread that
// drains it (`logos_core_process_events`/`logos_core_exec`), as the header documents; whether
// `user_data` may be used there is the application's contract, stated in the header.
unsafe impl Send for Callback {}

impl Callback {
    /// Pairs a callback with its user data; `None` when the application passed NULL.
    pub(crate) fn new(f: Option<CallbackFn>, user_data: *mut c_void) -> Option<Callback> {
        f.map(|f| Callback { f, user_data })
    }

    /// Calls the application: `f(result, message, user_data)`. `message` lives until it
    /// returns.
    pub(crate) fn invoke(&self, result: c_int, message: &CString) {
        // SAFETY: `f` is the application's AsyncCallback, called with the arguments the header
        // documents (a NUL-terminated message valid during the call, its own user_data), on a
        // thread that is inside process_events/exec, where the header allows callbacks.
        unsafe { (self.f)(result, message.as_ptr(), self.user_data) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        // SAFETY: NULL is allowed.
        let e = unsafe { arg(std::ptr::null(), "plugin_name") }.unwrap_err();
        assert!(matches!(
            e,
            Error::Null {
                name: "plugin_name"
            }
        ));
        let bad = c"ab\xffcd";
        // SAFETY: a valid C string literal.
        let e = unsafe { arg(bad.as_ptr(), "x") }.unwrap_err();
        assert!(matches!(e, Error::Utf8 { offset: 2, .. }), "{e:?}");
        // SAFETY: a valid C string literal.
        assert_eq!(unsafe { arg(c"chat".as_ptr(), "x") }.unwrap(), "chat");
    }

    #[test]
    fn strings_and_lists_round_trip() {
        let s = to_c("héllo").unwrap();
        // SAFETY: just returned by to_c.
        assert_eq!(unsafe { CStr::from_ptr(s) }.to_str().unwrap(), "héllo");
        // SAFETY: from to_c, released once.
        unsafe { free_string(s) };

        let list = to_c_list(&["a".to_owned(), "bc".to_owned()]).unwrap();
        // SAFETY: a NULL-terminated list of 2 just built.
        unsafe {
            assert_eq!(CStr::from_ptr(*list).to_bytes(), b"a");
            assert_eq!(CStr::from_ptr(*list.add(1)).to_bytes(), b"bc");
            assert!((*list.add(2)).is_null());
            free_list(list);
        }
        let empty = to_c_list(&[]).unwrap();
        // SAFETY: a NULL-terminated empty list just built.
        unsafe {
            assert!((*empty).is_null());
            free_list(empty);
            free_list(std::ptr::null_mut());
            free_string(std::ptr::null_mut());
        }
    }

    #[test]
    fn callbacks_get_their_user_data() {
        unsafe extern "C" fn record(result: c_int, message: *const c_char, user_data: *mut c_void) {
            // SAFETY: the test passes a &mut (c_int, String) and a valid message.
            unsafe {
                let out = &mut *user_data.cast::<(c_int, String)>();
                out.0 = result;
                out.1 = CStr::from_ptr(message).to_string_lossy().into_owned();
            }
        }
        let mut out: (c_int, String) = (0, String::new());
        let cb = Callback::new(Some(record), (&raw mut out).cast()).unwrap();
        cb.invoke(1, &CString::new("{}").unwrap());
        assert_eq!(out, (1, "{}".to_owned()));
        assert!(Callback::new(None, std::ptr::null_mut()).is_none());
    }
}
