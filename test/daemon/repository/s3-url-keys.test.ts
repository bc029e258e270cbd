import { parseS3Url, formatS3Url } from '../../../daemon/repository/s3-url';
import { childNames, childrenPrefix, folderMarker, objectName } from '../../../daemon/repository/s3-keys';
import { s3Failure } from '../../../daemon/repository/s3-client';

describe('S3 repository URL', () => {
  it.each([
    ['s3://backups', 'backups', ''],
    ['s3://backups/', 'backups', ''],
    ['s3://backups/pve', 'backups', 'pve/'],
    ['s3://backups/pve/cluster-a/', 'backups', 'pve/cluster-a/'],
    ['s3://my.bucket-1//a//b', 'my.bucket-1', 'a/b/'],
  ])('%s → bucket %s, prefix %j', (url, bucket, prefix) => {
    expect(parseS3Url(url)).toEqual({ bucket, prefix });
    expect(parseS3Url(formatS3Url({ bucket, prefix }))).toEqual({ bucket, prefix });
  });

  it.each([
    ['/srv/backup', 'it must start with s3://'],
    ['s3://', 'not a valid S3 bucket name'],
    ['s3://ab', 'not a valid S3 bucket name'],
    ['s3://Backups', 'not a valid S3 bucket name'],
    ['s3://a..b', 'not a valid S3 bucket name'],
    ['s3://bucket/../x', "'..' segments"],
  ])('%s is refused (%s)', (url, hint) => {
    expect(() => parseS3Url(url)).toThrow(expect.objectContaining({ code: 'CBT_S3_INVALID_URL', message: expect.stringContaining(hint) }));
  });
});

describe('S3 key layout', () => {
  const loc = { bucket: 'b', prefix: 'pve/' };
  it('maps keys, folder markers and listing prefixes under the prefix', () => {
    expect(objectName(loc, 'vm/100/manifest.json')).toBe('pve/vm/100/manifest.json');
    expect(folderMarker(loc, 'vm/100')).toBe('pve/vm/100/');
    expect(childrenPrefix(loc, '')).toBe('pve/');
    expect(childrenPrefix(loc, 'vm')).toBe('pve/vm/');
    expect(childrenPrefix({ bucket: 'b', prefix: '' }, '')).toBe('');
  });

  it.each([
    [['pve/vm/', 'pve/vm/100/', 'pve/vm/7/'], ['100', '7']],
    [['pve/vm/b', 'pve/vm/a', 'pve/vm/a/', 'pve/other'], ['a', 'b']],
    [['pve/vm/x/y'], []],
  ])('children of pve/vm/ in %j are %j (the folder marker itself left out)', (names, children) => {
    expect(childNames('pve/vm/', names)).toEqual(children);
  });
});

describe('S3 failures as coded errors', () => {
  const where = { endpoint: 'http://127.0.0.1:7480', bucket: 'b', url: (k: string) => `s3://b/${k}` };
  it.each([
    [{ code: 'QuotaExceeded' }, 'CBT_REPO_NO_SPACE'],
    [{ code: 'AccessDenied' }, 'CBT_S3_AUTH_FAILED'],
    [{ code: 'SignatureDoesNotMatch' }, 'CBT_S3_AUTH_FAILED'],
    [{ code: 'InvalidAccessKeyId' }, 'CBT_S3_AUTH_FAILED'],
    [{ code: 'NoSuchBucket' }, 'CBT_S3_BUCKET_NOT_FOUND'],
    [{ code: 'ECONNREFUSED' }, 'CBT_S3_UNREACHABLE'],
    [{ code: 'InternalError' }, 'CBT_S3_REQUEST_FAILED'],
    [new Error('socket hang up'), 'CBT_S3_REQUEST_FAILED'],
  ])('%j → %s', (err, code) => {
    const e = s3Failure(where, 'PUT', 'vm/100/manifest.json', Object.assign(new Error('x'), err));
    expect(e).toMatchObject({ code });
  });
});
